"""Plan shared-prefix reuse as a tree: which prompts share how many leading tokens."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

MIN_EXTENSION = (
    16  # tokens; a node that adds fewer than this to its parent's prefix is merged into it
)


@dataclass
class PrefixNode:
    """Prompts whose first `prefix_len` tokens are identical.

    `members` (indices into the input) are run from `prefix_len` on; each child
    extends this node's prefix for a subset that shares more.
    """

    prefix_len: int
    members: list[int] = field(default_factory=list)
    children: list[PrefixNode] = field(default_factory=list)

    def walk(self) -> Iterator[PrefixNode]:
        yield self
        for child in self.children:
            yield from child.walk()

    def tokens_computed(self, lengths: Sequence[int], parent_len: int = 0) -> int:
        """Tokens this plan runs: each prefix extension once, plus every member's suffix."""
        own = self.prefix_len - parent_len + sum(lengths[m] - self.prefix_len for m in self.members)
        return own + sum(c.tokens_computed(lengths, self.prefix_len) for c in self.children)


def _lcp(a: bytes, b: bytes) -> int:
    """Common prefix length, in tokens, of two big-endian int32 byte strings."""
    x, y = np.frombuffer(a, dtype=">i4"), np.frombuffer(b, dtype=">i4")
    n = min(x.size, y.size)
    diff = np.flatnonzero(x[:n] != y[:n])
    return int(diff[0]) if diff.size else n


def _build(order: list[int], adjacent: np.ndarray, parent_len: int) -> PrefixNode:
    """The LCP-interval tree over `order` (sorted), whose adjacent common prefixes are `adjacent`."""
    node_len = int(adjacent.min()) if adjacent.size else parent_len
    node = PrefixNode(node_len if node_len - parent_len >= MIN_EXTENSION else parent_len)
    start = 0
    for end in [*np.flatnonzero(adjacent == node_len).tolist(), len(order) - 1]:
        run = order[start : end + 1]
        if len(run) == 1:
            node.members.append(run[0])
        else:
            child = _build(run, adjacent[start:end], node.prefix_len)
            if child.prefix_len == node.prefix_len:  # too short an extension: adopt its contents
                node.members += child.members
                node.children += child.children
            else:
                node.children.append(child)
        start = end + 1
    return node


def plan_prefix_tree(seqs: Sequence[Sequence[int] | np.ndarray], caps: Sequence[int]) -> PrefixNode:
    """A tree of shared prefixes over `seqs`.

    `caps[i]` is the longest prefix sample i may share (at most its length - 1,
    so that every sample keeps a suffix of its own to run). Prompts
    cut at their cap are sorted, so prompts sharing a prefix are adjacent and
    the adjacent common-prefix lengths define the tree (an LCP-interval tree).
    """
    if not seqs:
        return PrefixNode(0)
    # big-endian int32 bytes compare like the token lists, at 4 bytes a token
    heads = [np.asarray(seqs[i][: caps[i]], dtype=">i4").tobytes() for i in range(len(seqs))]
    order = sorted(range(len(seqs)), key=lambda i: heads[i])
    adjacent = np.array(
        [_lcp(heads[order[k]], heads[order[k + 1]]) for k in range(len(order) - 1)], dtype=np.int64
    )
    return _build(order, adjacent, 0)
