"""taskvec: extract and study task vectors (hidden states at chosen layers and positions)."""

from __future__ import annotations

from typing import Any

from taskvec.errors import TaskvecError

__version__ = "0.1.0"
__all__ = ["TaskvecError", "__version__", "extract", "prepare", "run_extraction"]


def __getattr__(name: str) -> Any:
    """Import the heavy pipeline (torch, transformers) only when it is used."""
    if name in ("extract", "prepare", "run_extraction"):
        from taskvec import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'taskvec' has no attribute {name!r}")
