"""Which prompts (or tasks) each rank runs: a deterministic plan that keeps prefix-tree branches
whole and balances the ranks by token count.

Generation and patching cannot shard like extraction (batch k to rank k % N): a prompt's cost is
its prefill plus every token it generates, and a branch of the prefix tree (prompts sharing more
than the prefix all share) split over ranks is prefilled once on each. So the prompts are
grouped by branch, a branch costing more than one rank's share is split into its sub-branches
and prompts, and the groups are dealt, costliest first, to the least loaded rank (LPT).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from taskvec.model.prefix import PrefixNode


@dataclass(frozen=True)
class Group:
    """Prompts that stay on one rank, and what they cost (tokens)."""

    members: tuple[int, ...]
    cost: int


def _subtree(node: PrefixNode, lengths: Sequence[int], base: int, per_sample: int) -> Group:
    members = tuple(m for n in node.walk() for m in n.members)
    return Group(members, node.tokens_computed(lengths, base) + per_sample * len(members))


def prefix_groups(
    tree: PrefixNode, lengths: Sequence[int], per_sample: int, parts: int
) -> list[Group]:
    """Groups of prompts to deal to `parts` ranks: the branches below the root (which every rank
    computes once), each split into its sub-branches and single prompts while it costs more than
    one rank's share. A prompt costs its tokens past the root prefix plus `per_sample`
    (the tokens it may generate); a branch its prefix once plus its prompts."""
    base = tree.prefix_len
    todo: list[tuple[PrefixNode | None, Group]] = [
        (child, _subtree(child, lengths, base, per_sample)) for child in tree.children
    ]
    todo += [(None, Group((m,), lengths[m] - base + per_sample)) for m in tree.members]
    share = sum(g.cost for _, g in todo) / max(parts, 1)
    while True:
        splittable = [k for k, (node, g) in enumerate(todo) if node is not None and g.cost > share]
        if not splittable:
            return [g for _, g in todo]
        node = todo.pop(max(splittable, key=lambda k: todo[k][1].cost))[0]
        assert node is not None
        todo += [(c, _subtree(c, lengths, base, per_sample)) for c in node.children]
        todo += [(None, Group((m,), lengths[m] - base + per_sample)) for m in node.members]


def deal(groups: Sequence[Group], parts: int) -> tuple[list[list[int]], list[int]]:
    """Each rank's members (sorted) and cost: groups costliest first, each to the least loaded
    rank (ties: the lower rank), so the plan depends only on the groups."""
    load = [0] * parts
    shares: list[list[int]] = [[] for _ in range(parts)]
    for group in sorted(groups, key=lambda g: (-g.cost, g.members)):
        rank = min(range(parts), key=lambda r: (load[r], r))
        load[rank] += group.cost
        shares[rank] += group.members
    return [sorted(share) for share in shares], load


def plan_shards(
    tree: PrefixNode, lengths: Sequence[int], per_sample: int, parts: int
) -> tuple[list[list[int]], list[int]]:
    """Each rank's prompts (indices into `lengths`) and its planned cost in tokens."""
    return deal(prefix_groups(tree, lengths, per_sample, parts), parts)
