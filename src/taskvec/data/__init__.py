"""Dataset loading: one entry point, `load_split`, for every `dataset.source`.

Each source registers itself (`sources.py`) when its module is imported here.
"""

from __future__ import annotations

from pathlib import Path

from taskvec.data import builtin, files, hub  # noqa: F401  (each registers its dataset sources)
from taskvec.data.base import DatasetConfig, FieldMap, Sample
from taskvec.data.numbers import parse_number
from taskvec.data.sources import source

__all__ = [
    "DatasetConfig",
    "FieldMap",
    "Sample",
    "available_splits",
    "load_split",
    "parse_number",
    "sample_kinds",
]


def available_splits(cfg: DatasetConfig) -> list[str]:
    """The split names `load_split` accepts for `cfg` (for `hf`, asks the Hub or its cache)."""
    return source(cfg.source).splits(cfg)


def load_split(cfg: DatasetConfig, split: str, base_dir: Path | None = None) -> list[Sample]:
    """All samples of `split`, in file order (builtin: generation order).

    Relative file paths are tried against the CWD first, then against `base_dir`
    (typically the directory of the config file that named them).
    """
    return source(cfg.source).load(cfg, split, base_dir)


def sample_kinds(cfg: DatasetConfig, split: str) -> dict[str, str]:
    """`sample_id -> question kind` where the data has kinds (the builtin generator's task sets:
    `finance` has 18), else empty; regenerating the split is cheap and deterministic."""
    kinds = source(cfg.source).kinds
    return kinds(cfg, split) if kinds is not None else {}
