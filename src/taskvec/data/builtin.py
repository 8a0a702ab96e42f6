"""The `builtin` dataset source: generated task sets and the one-word task suite, no download.

Fully deterministic from the seed, so runs are reproducible anywhere. The task sets are `finance`
(multi-step numeric problems, `finance.py`), `short` (one-word answers from two labels,
`short.py`) and `finance_easy` (one step on small numbers, `easy.py`); every kind of a set is also
a set of its own. `dataset.name` may instead name a one-word task (`tasks.py`).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from taskvec.data.base import DatasetConfig, Sample
from taskvec.data.easy import EASY_KINDS
from taskvec.data.finance import KINDS
from taskvec.data.numbers import format_number
from taskvec.data.problems import Generator, Problem
from taskvec.data.short import SHORT_KINDS
from taskvec.data.sources import SOURCES, Source, listed, register
from taskvec.data.tasks import WORD_TASKS, word_split
from taskvec.errors import TaskvecError

SPLITS = ("train", "test")

TASK_SETS: dict[str, dict[str, Generator]] = {
    "finance": KINDS,
    "short": SHORT_KINDS,
    "finance_easy": EASY_KINDS,
}
"""Named task sets; every kind is also a set of its own."""


def task_set(name: str | None) -> dict[str, Generator]:
    """The kinds of builtin task set `name` (default `finance`), or the one kind so named."""
    if name in TASK_SETS or name is None:
        return TASK_SETS[name or "finance"]
    for kinds in TASK_SETS.values():
        if name in kinds:
            return {name: kinds[name]}
    raise TaskvecError(
        f"builtin task set '{name}' is unknown; use one of: {', '.join(task_set_names())}"
    )


def task_set_names() -> tuple[str, ...]:
    """Every name `task_set` accepts: the sets, then each kind."""
    return (*TASK_SETS, *(kind for kinds in TASK_SETS.values() for kind in kinds))


# --- splits -----------------------------------------------------------------------------


def _split_seed(seed: int, split: str, name: str = "finance") -> int:
    """A stable per-split (and per task set) seed (Python's hash() is salted per process)."""
    key = f"{seed}:{split}" if name == "finance" else f"{seed}:{split}:{name}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def _owner(question: str) -> str:
    """The one split allowed to hold `question`, so train and test never share a text."""
    return SPLITS[hashlib.sha256(question.encode()).digest()[0] % len(SPLITS)]


def _draw(generator: Generator, rng: random.Random, split: str, seen: set[str]) -> Problem:
    """A fresh problem owned by `split` and not yet in it."""
    while True:
        problem = generator(rng)
        if problem.question not in seen and _owner(problem.question) == split:
            return problem


def generate_labeled(
    split: str, n: int, seed: int = 0, name: str = "finance"
) -> list[tuple[str, Sample]]:
    """`n` samples of `split` of task set `name` with their kind names; kinds are dealt in
    shuffled rounds so all appear."""
    if split not in SPLITS:
        raise TaskvecError(
            f"builtin dataset has no split '{split}'; use one of: {', '.join(SPLITS)}"
        )
    kinds = task_set(name)
    rng = random.Random(_split_seed(seed, split, name))
    seen: set[str] = set()
    out: list[tuple[str, Sample]] = []
    while len(out) < n:
        order = list(kinds)
        rng.shuffle(order)
        for kind in order[: n - len(out)]:
            problem = _draw(kinds[kind], rng, split, seen)
            seen.add(problem.question)
            sample = Sample(
                id=f"{split}_{len(out)}",
                question=problem.question,
                answer=problem.answer,
                answer_text=format_number(problem.answer)
                if problem.answer is not None
                else str(problem.answer_text),
                rationale=problem.rationale,
            )
            out.append((kind, sample))
    return out


def generate_split(split: str, n: int, seed: int = 0, name: str = "finance") -> list[Sample]:
    """`n` deterministic samples of `split` ("train" or "test") of builtin task set `name`."""
    return [sample for _, sample in generate_labeled(split, n, seed, name)]


# --- the source ---------------------------------------------------------------------------


def _check_name(cfg: DatasetConfig) -> None:
    names = (*task_set_names(), *WORD_TASKS)
    if cfg.name is not None and cfg.name not in names:
        others = listed([name for name in SOURCES if name != "builtin"])
        raise TaskvecError(
            f"dataset.name '{cfg.name}' is not a builtin task set; use one of: {', '.join(names)} "
            f"(or leave it unset), or set `dataset.source` to {others}"
        )


def _splits(cfg: DatasetConfig) -> list[str]:
    _check_name(cfg)
    return list(SPLITS)


def _load(cfg: DatasetConfig, split: str, base_dir: Path | None) -> list[Sample]:
    _check_name(cfg)
    n = cfg.n_train if split == "train" else cfg.n_test
    if cfg.name in WORD_TASKS:
        return word_split(cfg.name, split, n, cfg.seed)
    return generate_split(split, n, cfg.seed, cfg.name or "finance")


def _kinds(cfg: DatasetConfig, split: str) -> dict[str, str]:
    """The generator's kinds where a split mixes several (`finance` has 18); word tasks have none."""
    if cfg.name in WORD_TASKS or split not in SPLITS:
        return {}
    n = cfg.n_train if split == "train" else cfg.n_test
    labeled = generate_labeled(split, n, cfg.seed, cfg.name or "finance")
    return {sample.id: kind for kind, sample in labeled} if len({k for k, _ in labeled}) > 1 else {}


register(Source("builtin", _splits, _load, kinds=_kinds, task_sets=True))
