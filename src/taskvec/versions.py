"""Package versions recorded with every session and every evaluation, for reproducibility."""

from __future__ import annotations

import platform

import torch
import transformers

import taskvec


def package_versions() -> dict[str, str]:
    return {
        "taskvec": taskvec.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
