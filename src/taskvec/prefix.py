"""Plan shared-prefix groups: which prompts share how many leading tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PrefixGroup:
    """Samples (by position in the input) whose first `prefix_len` tokens are identical."""

    prefix_len: int
    members: list[int]


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    x, y = np.asarray(a[:n]), np.asarray(b[:n])
    diff = np.flatnonzero(x != y)
    return int(diff[0]) if diff.size else n


def plan_groups(seqs: Sequence[Sequence[int]], caps: Sequence[int]) -> list[PrefixGroup]:
    """Split prompts into groups sharing a token prefix, saving the most tokens.

    Prompts are sorted lexicographically so that shared prefixes are adjacent;
    every threshold on the adjacent common-prefix length gives one split into
    runs, and the one that skips the most recomputed tokens wins. `caps[i]` is
    the first token sample i needs a vector for: a prefix never covers it, so
    every requested position lies in the suffix that is run per sample.
    """
    n = len(seqs)
    order = sorted(range(n), key=lambda i: list(seqs[i]))
    if n < 2:
        return [PrefixGroup(0, order)]
    caps_sorted = np.array([caps[i] for i in order])
    adjacent = np.array([_lcp(seqs[order[k]], seqs[order[k + 1]]) for k in range(n - 1)])
    best: tuple[int, np.ndarray, np.ndarray] | None = None
    for threshold in np.unique(adjacent[adjacent > 0]):
        joined = adjacent >= threshold
        gid = np.concatenate([[0], np.cumsum(~joined)])
        ngroups = int(gid[-1]) + 1
        prefix = np.full(ngroups, np.iinfo(np.int64).max)
        np.minimum.at(prefix, gid[:-1][joined], adjacent[joined])
        np.minimum.at(prefix, gid, caps_sorted)
        size = np.bincount(gid, minlength=ngroups)
        prefix = np.where(size >= 2, prefix, 0)
        saved = int((prefix * (size - 1)).sum())
        if best is None or saved > best[0]:
            best = (saved, gid, prefix)
    if best is None or best[0] == 0:
        return [PrefixGroup(0, order)]
    _, gid, prefix = best
    groups: dict[int, list[int]] = {}
    for pos, g in enumerate(gid):
        groups.setdefault(int(g), []).append(order[pos])
    shared = [PrefixGroup(int(prefix[g]), m) for g, m in groups.items() if prefix[g] > 0]
    alone = [i for g, m in groups.items() if prefix[g] == 0 for i in m]
    return shared + ([PrefixGroup(0, alone)] if alone else [])
