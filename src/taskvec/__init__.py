"""taskvec: extract and study task vectors (hidden states at chosen layers and positions)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from taskvec.errors import TaskvecError

__version__ = "0.1.0"
__all__ = ["TaskvecError", "__version__", "extract", "list_sessions", "load_session", "prepare", "run_extraction"]

_LAZY = {
    "extract": "taskvec.extraction.run",
    "prepare": "taskvec.extraction.prepare",
    "run_extraction": "taskvec.extraction.run",
    "load_session": "taskvec.session.reader",
    "list_sessions": "taskvec.session.reader",
}


def __getattr__(name: str) -> Any:
    """Import the heavy modules (torch, transformers) only when one of their names is used."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'taskvec' has no attribute {name!r}")
