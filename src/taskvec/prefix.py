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

    `caps[i]` is the first token sample i needs a vector for; a prefix never
    reaches it, so every requested position lies in the suffix run per sample.
    Prompts cut at their cap are sorted so that shared prefixes are adjacent;
    each threshold on the adjacent common-prefix length splits them into runs,
    and the split that skips the most recomputed tokens wins. Groups without
    a useful prefix are merged into one group with prefix length 0.
    """
    n = len(seqs)
    heads = [list(seqs[i][: caps[i]]) for i in range(n)]
    order = sorted(range(n), key=lambda i: heads[i])
    adjacent = np.array([_lcp(heads[order[k]], heads[order[k + 1]]) for k in range(n - 1)], dtype=np.int64)
    best: tuple[int, np.ndarray, np.ndarray] | None = None
    for threshold in np.unique(adjacent[adjacent > 0]):
        joined = adjacent >= threshold
        gid = np.concatenate([[0], np.cumsum(~joined)])
        prefix = np.full(int(gid[-1]) + 1, np.iinfo(np.int64).max)
        np.minimum.at(prefix, gid[:-1][joined], adjacent[joined])
        size = np.bincount(gid)
        prefix = np.where(size >= 2, prefix, 0)
        saved = int((prefix * (size - 1)).sum())
        if best is None or saved > best[0]:
            best = (saved, gid, prefix)
    if best is None:
        return [PrefixGroup(0, order)]
    _, gid, prefix = best
    groups: dict[int, list[int]] = {}
    for pos, g in enumerate(gid):
        groups.setdefault(int(g), []).append(order[pos])
    shared = [PrefixGroup(int(prefix[g]), m) for g, m in groups.items() if prefix[g] > 0]
    alone = [i for g, m in groups.items() if prefix[g] == 0 for i in m]
    return shared + ([PrefixGroup(0, alone)] if alone else [])
