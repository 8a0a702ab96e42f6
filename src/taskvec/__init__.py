"""taskvec: extract and study task vectors (hidden states at chosen layers and positions).

The public API (docs/architecture.md, "Python API") is `__all__`. `import taskvec` imports
no torch: each name is imported from its module on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from taskvec.errors import TaskvecError

__version__ = "0.1.0"

_LAZY = {
    # sessions on disk
    "Session": "taskvec.session.reader",
    "list_sessions": "taskvec.session.names",
    "load_session": "taskvec.session.reader",
    "VectorKey": "taskvec.positions",
    # task vectors as values: arithmetic, save/load, steering hooks, expressions over sessions
    "TaskVector": "taskvec.session.vector",
    "parse_vector": "taskvec.session.expression",
    # the flows
    "prepare": "taskvec.extraction.prepare",
    "run_extraction": "taskvec.extraction.run",
    "extract": "taskvec.extraction.run",
    "evaluate": "taskvec.evaluation.run",
    "patch": "taskvec.patching.run",
    "steer": "taskvec.steering.run",
    # the model and the extraction engine
    "resolve_model": "taskvec.model.loading",
    "load_model": "taskvec.model.loading",
    "load_tokenizer": "taskvec.model.loading",
    "Extractor": "taskvec.model.engine",
    "Item": "taskvec.prompts.item",
    # patching building blocks: vectors from few-shot prompts, patched greedy runs, scoring
    "mean_last_token_vectors": "taskvec.model.intervene",
    "GreedyRunner": "taskvec.model.batched",
    "RunSpec": "taskvec.model.batched",
    "AnswerScorer": "taskvec.patching.scoring",
}

__all__ = ["TaskvecError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the heavy modules (torch, transformers) only when one of their names is used."""
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'taskvec' has no attribute {name!r}")
