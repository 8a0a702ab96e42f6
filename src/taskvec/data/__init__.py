"""Dataset loading: one entry point, `load_split`, for every `dataset.source`."""

from __future__ import annotations

from pathlib import Path

import taskvec.data.easy  # noqa: F401  (registers the finance_easy task set)
from taskvec.data.base import DatasetConfig, FieldMap, Sample
from taskvec.data.builtin import SPLITS as BUILTIN_SPLITS
from taskvec.data.builtin import generate_labeled, generate_split, task_set_names
from taskvec.data.files import file_splits, load_file_split, load_finqa_split
from taskvec.data.hub import hub_splits, load_hub_split
from taskvec.data.numbers import parse_number
from taskvec.data.tasks import WORD_TASKS, word_split
from taskvec.errors import TaskvecError

__all__ = [
    "DatasetConfig",
    "FieldMap",
    "Sample",
    "available_splits",
    "load_split",
    "parse_number",
    "sample_kinds",
]

# "finance" (numeric), "short" and its tasks, the word-task suite
BUILTIN_NAMES = (
    *task_set_names(),
    *WORD_TASKS,
)  # "finance", "finance_easy", "short", each of their kinds; the word tasks


def _check_builtin_name(cfg: DatasetConfig) -> None:
    if cfg.name is not None and cfg.name not in BUILTIN_NAMES:
        raise TaskvecError(
            f"dataset.name '{cfg.name}' is not a builtin task set; use one of: {', '.join(BUILTIN_NAMES)} "
            "(or leave it unset), or set `dataset.source` to file, finqa or hf"
        )


def available_splits(cfg: DatasetConfig) -> list[str]:
    """The split names `load_split` accepts for `cfg` (for `hf`, asks the Hub or its cache)."""
    if cfg.source == "builtin":
        _check_builtin_name(cfg)
        return list(BUILTIN_SPLITS)
    if cfg.source == "hf":
        return hub_splits(cfg)
    return file_splits(cfg)


def load_split(cfg: DatasetConfig, split: str, base_dir: Path | None = None) -> list[Sample]:
    """All samples of `split`, in file order (builtin: generation order).

    Relative file paths are tried against the CWD first, then against `base_dir`
    (typically the directory of the config file that named them).
    """
    if cfg.source == "builtin":
        _check_builtin_name(cfg)
        n = cfg.n_train if split == "train" else cfg.n_test
        if cfg.name in WORD_TASKS:
            return word_split(cfg.name, split, n, cfg.seed)
        return generate_split(split, n, cfg.seed, cfg.name or "finance")
    if cfg.source == "file":
        return load_file_split(cfg, split, base_dir)
    if cfg.source == "finqa":
        return load_finqa_split(cfg, split, base_dir)
    return load_hub_split(cfg, split)


def sample_kinds(cfg: DatasetConfig, split: str) -> dict[str, str]:
    """`sample_id -> question kind` where the data has kinds (the builtin generator's task sets:
    `finance` has 18), else empty; regenerating the split is cheap and deterministic."""
    if cfg.source != "builtin" or cfg.name in WORD_TASKS or split not in BUILTIN_SPLITS:
        return {}
    n = cfg.n_train if split == "train" else cfg.n_test
    labeled = generate_labeled(split, n, cfg.seed, cfg.name or "finance")
    return {sample.id: kind for kind, sample in labeled} if len({k for k, _ in labeled}) > 1 else {}
