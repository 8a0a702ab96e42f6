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
    tree: PrefixNode, lengths: Sequence[int], per_sample: int, share: float
) -> list[Group]:
    """Groups of `tree`'s prompts: the branches below the root (which every rank computes once),
    each split into its sub-branches and single prompts while it costs more than `share` (one
    rank's part of the whole run). A prompt costs its tokens past the root prefix plus
    `per_sample` (the tokens it may generate); a branch its prefix once plus its prompts."""
    base = tree.prefix_len
    todo: list[tuple[PrefixNode | None, Group]] = [
        (child, _subtree(child, lengths, base, per_sample)) for child in tree.children
    ]
    todo += [(None, Group((m,), lengths[m] - base + per_sample)) for m in tree.members]
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
    trees: Sequence[PrefixNode], lengths: Sequence[int], per_sample: int, parts: int
) -> tuple[list[list[int]], list[int]]:
    """Each rank's prompts (indices into `lengths`) and planned tokens, the roots it prefills
    included. `trees` are independent prefix plans over disjoint prompts (steering: one a
    condition), their members indices into `lengths`."""
    total = sum(
        t.tokens_computed(lengths, t.prefix_len)
        + per_sample * sum(len(n.members) for n in t.walk())
        for t in trees
    )
    groups = [g for t in trees for g in prefix_groups(t, lengths, per_sample, total / parts)]
    shares, loads = deal(groups, parts)
    plan_of = {m: k for k, t in enumerate(trees) for n in t.walk() for m in n.members}
    for rank, share in enumerate(shares):
        # every rank prefills once the root of each plan it has prompts of
        loads[rank] += sum(trees[k].prefix_len for k in {plan_of[m] for m in share})
    return shares, loads
