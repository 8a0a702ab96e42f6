"""The dataset-source registry: each `dataset.source` name, how it lists and loads its splits,
and what the flows must know about it.

A source is one module that calls `register(Source(...))` when imported; `taskvec.data` imports
every source module, so `DatasetConfig` accepts the name and `load_split` reaches the loader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from taskvec.errors import TaskvecError

if TYPE_CHECKING:
    from taskvec.data.base import DatasetConfig, Sample


@dataclass(frozen=True)
class Source:
    """A dataset source and its capabilities.

    `splits` lists the split names `load` accepts; `load(cfg, split, base_dir)` returns a split's
    samples in order (relative paths tried against the CWD, then `base_dir`). `kinds` maps sample
    ids to question kinds where the data has them. `local_files`: the config names files on this
    machine, which a run stores absolute with their SHA-256 (re-run and resume from anywhere).
    `online`: split names are known only by asking a server, so they are checked when loading.
    `task_sets`: `dataset.name` picks a builtin task set (patching's `tasks` may override it).
    """

    name: str
    splits: Callable[[DatasetConfig], list[str]]
    load: Callable[[DatasetConfig, str, Path | None], list[Sample]]
    kinds: Callable[[DatasetConfig, str], dict[str, str]] | None = None
    local_files: bool = False
    online: bool = False
    task_sets: bool = False


SOURCES: dict[str, Source] = {}


def register(entry: Source) -> Source:
    """Add a source under its name (registration order is the order error messages list them)."""
    if entry.name in SOURCES:
        raise ValueError(f"dataset source '{entry.name}' is registered twice")
    SOURCES[entry.name] = entry
    return entry


def source(name: str) -> Source:
    """The registered source called `name`."""
    if name not in SOURCES:
        raise TaskvecError(f"dataset.source '{name}' is unknown; use one of: {', '.join(SOURCES)}")
    return SOURCES[name]


def listed(names: list[str]) -> str:
    """`a, b or c`, as the error messages name choices."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
