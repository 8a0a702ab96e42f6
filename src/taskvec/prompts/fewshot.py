"""Choose few-shot demonstrations for each query, never the query itself."""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence

from taskvec.data.base import Sample
from taskvec.errors import TaskvecError
from taskvec.prompts.config import Demonstrations


def _sample_seed(seed: int, sample_id: str) -> int:
    """A stable per-query seed (Python's hash() is salted per process)."""
    return zlib.crc32(f"{seed}:{sample_id}".encode())


def select_demonstrations(
    pool: Sequence[Sample], query: Sample, n_shot: int, spec: Demonstrations
) -> list[Sample]:
    """The `n_shot` demonstrations for `query` from `pool`.

    `first` takes the first k of the pool; `random` a seeded draw, shared by all
    queries unless `per_sample`. A query that is itself among the chosen is
    replaced by the next candidate, so it never sees its own answer.
    """
    if n_shot == 0:
        return []
    available = len(pool) - sum(1 for s in pool if s.id == query.id)
    if available < n_shot:
        raise TaskvecError(
            f"n_shot={n_shot} but split '{spec.split}' has only {available} demonstrations for sample "
            f"'{query.id}'; lower n_shot or use a larger demonstration split"
        )
    if spec.selection == "first":
        order: Sequence[Sample] = pool
    else:
        seed = _sample_seed(spec.seed, query.id) if spec.per_sample else spec.seed
        order = random.Random(seed).sample(list(pool), min(len(pool), n_shot + 1))
    return [s for s in order if s.id != query.id][:n_shot]
