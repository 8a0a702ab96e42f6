"""Checks that need no torch, run before the heavy imports (5-12 s on a small CPU): a split
that does not exist, a layer out of range, a session to resume that is already complete.

The full checks still run later (`prepare`); these only make the common mistakes fast.
"""

from __future__ import annotations

import json
from pathlib import Path

from taskvec.config import ExtractionConfig, load_config
from taskvec.errors import TaskvecError
from taskvec.model.identity import block_count
from taskvec.positions import normalise_layer
from taskvec.prompts.config import PromptConfig, load_prompt_config
from taskvec.prompts.splits import check_splits
from taskvec.session.names import session_paths


def check_extraction(config_path: Path, resume: str | None = None) -> ExtractionConfig:
    """Config, prompt config, split, layers (where the depth is known without torch) and the
    session to resume."""
    cfg = load_config(config_path)
    given = cfg.prompt_config
    prompt_cfg = given if isinstance(given, PromptConfig) else load_prompt_config(given)
    check_splits(prompt_cfg, cfg.split)
    spec = cfg.model or prompt_cfg.model
    n_blocks = block_count(spec) if spec else None
    if n_blocks is not None:
        for layer in cfg.layers:
            normalise_layer(layer, n_blocks)
    if resume is not None:
        paths = session_paths(resume, cfg.output_dir)
        check_not_complete(paths.metadata, f"session '{paths.name}'")
    return cfg


def check_not_complete(record: Path, what: str) -> None:
    """Refuse to resume a run whose metadata (or metrics) file says it is complete."""
    try:
        status = json.loads(record.read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return  # missing or unreadable: the full check says what is wrong
    if status == "complete":
        raise TaskvecError(f"--resume: {what} is already complete; nothing to resume")
