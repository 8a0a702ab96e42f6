"""The prefix service and ragged batches, without a model: what is computed, when it is dropped,
and where each row's tokens sit."""

from __future__ import annotations

import torch

from taskvec.model.prefill import Ids, Prefix, PrefixCache, node_batches, plan
from taskvec.model.ragged import left_padded, packed, right_padded


def _prompts() -> list[list[int]]:
    """Three prompts under a 20-token root, two of them under a 40-token child, one alone."""
    root, child = list(range(100, 120)), list(range(200, 220))
    return [
        root + child + [1, 2],
        root + child + [3],
        root + [4, 5, 6],
        [7, 8, 9],
    ]


def _cache(waiting: set[int], calls: list[tuple[int, int, list[int]]]) -> PrefixCache:
    """A cache over `_prompts()` whose extension records (start, new tokens, wanted)."""

    def extend(below: Prefix, ids: Ids, wanted: list[int]) -> Prefix:
        calls.append((below.length, len(ids), wanted))
        known = dict(below.known) | {t: torch.tensor(float(t)) for t in wanted}
        return Prefix(below.length + len(ids), None, known)

    ids = _prompts()
    wanted = {0: [5, 30, 41], 1: [25], 2: [3]}
    return PrefixCache(plan(ids), ids, extend, waiting, lambda m: wanted.get(m, []))


def test_each_prefix_is_computed_once_on_its_parents() -> None:
    calls: list[tuple[int, int, list[int]]] = []
    cache = _cache({0, 1, 2, 3}, calls)
    tree = cache.tree
    child = next(n for n in tree.walk() if n.prefix_len == 40)
    prefix = cache.get(child)
    assert [c[:2] for c in calls] == [(0, 20), (20, 20)]  # the root first, then its extension
    # the wanted tokens inside each extension, of every prompt under it (41 is in a suffix)
    assert [c[2] for c in calls] == [[3, 5], [25, 30]]
    assert sorted(prefix.known) == [3, 5, 25, 30] and prefix.length == 40
    assert cache.get(child) is prefix and len(calls) == 2


def test_a_prefix_is_dropped_when_no_waiting_prompt_needs_it() -> None:
    calls: list[tuple[int, int, list[int]]] = []
    cache = _cache({0, 1, 2}, calls)  # prompt 3 (alone, on the bare root) is not waiting
    root = cache.tree
    mid = next(n for n in root.walk() if n.prefix_len == 20)
    child = next(n for n in root.walk() if n.prefix_len == 40)
    cache.get(child)
    cache.release(child, 2)
    assert id(child) not in cache.prefixes and id(mid) in cache.prefixes
    cache.get(mid)
    cache.release(mid, 1)
    assert not cache.prefixes and len(calls) == 2


def test_batches_come_with_their_prefix_in_plan_order() -> None:
    ids, cache = _prompts(), _cache({0, 1, 2, 3}, [])
    batches = node_batches(cache.tree, [len(p) for p in ids], 100, 8, packed=False)
    assert sorted(m for _, b in batches for m in b) == [0, 1, 2, 3]
    got = list(cache.batches(batches))
    assert [(b, p.length) for b, p in got] == [([3], 0), ([2], 20), ([0, 1], 40)]
    assert not cache.prefixes  # every prefix dropped once its last batch was taken
    off = plan(ids, prefix_cache=False)
    assert off.prefix_len == 0 and off.members == [0, 1, 2, 3] and not off.children


def test_left_padded_rows_sit_right_with_their_own_positions() -> None:
    batch = left_padded([[5, 6, 7], [8], []], [10, 4, 2])
    assert batch.ids.tolist() == [[5, 6, 7], [0, 0, 8], [0, 0, 0]]
    # a padding column takes its row's first position
    assert batch.positions.tolist() == [[10, 11, 12], [4, 4, 4], [2, 2, 2]]
    assert batch.mask(2).tolist() == [
        [True, True, True, True, True],
        [True, True, False, False, True],
        [True, True, False, False, False],
    ]
    assert batch.first == [0, 5, 9] and batch.lens == [3, 1, 0]


def test_right_padded_and_packed_rows() -> None:
    right = right_padded([[5, 6, 7], [8]], 3)
    assert right.ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right.positions.tolist() == [[3, 4, 5], [3, 4, 5]] and right.first == [0, 3]
    assert right.fed.tolist() == [[True, True, True], [True, False, False]]
    one = packed([[5, 6, 7], [8]], 3)
    assert one.ids.tolist() == [[5, 6, 7, 8]] and one.positions.tolist() == [[3, 4, 5, 3]]
    assert one.first == [0, 3] and one.lens == [3, 1]
