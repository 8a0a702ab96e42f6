"""The prefilled prefixes of one generation plan: each computed once, on top of its parent's, and
dropped as soon as no waiting prompt needs it."""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field

import torch

from taskvec.model.kvcache import KV
from taskvec.model.prefix import PrefixNode


@dataclass(frozen=True)
class Prefix:
    """A prefilled prefix: its KV cache (one row) after the shared root prefix, and the vectors
    read inside it (root included), by absolute token index."""

    kv: KV | None = None
    known: dict[int, torch.Tensor] = field(default_factory=dict)


# (the prefix below, new token ids, their first position, token indices to read) -> the longer one
Extend = Callable[[Prefix, list[int], int, list[int]], Prefix]


class PrefixStore:
    """The prefixes of `tree` over `prompt_ids`, computed by `extend` on demand; `wanted(m)` lists
    the token indices to read of prompt m; `root(prefix)` may take the root prefix over (the
    shared copy every row reads)."""

    def __init__(
        self,
        tree: PrefixNode,
        prompt_ids: Sequence[Sequence[int]],
        skip: Set[int],
        extend: Extend,
        wanted: Callable[[int], Sequence[int]],
        root: Callable[[Prefix], Prefix],
    ) -> None:
        self.tree, self.prompt_ids, self.extend, self.wanted, self.root = (
            tree,
            prompt_ids,
            extend,
            wanted,
            root,
        )
        self.parent = {id(c): n for n in tree.walk() for c in n.children}
        self.remaining = {
            id(n): sum(m not in skip for d in n.walk() for m in d.members) for n in tree.walk()
        }
        self.queue = [(m, node) for node in tree.walk() for m in node.members if m not in skip]
        self.prefixes: dict[int, Prefix] = {}

    def get(self, node: PrefixNode) -> Prefix:
        """`node`'s prefix, computed once on top of its parent's."""
        if id(node) in self.prefixes:
            return self.prefixes[id(node)]
        up = self.parent.get(id(node))
        start = up.prefix_len if up is not None else 0
        prefix = self.get(up) if up is not None else Prefix()
        if node.prefix_len > start:
            member = next(n.members[0] for n in node.walk() if n.members)
            wanted = sorted(
                {
                    t
                    for n in node.walk()
                    for m in n.members
                    for t in self.wanted(m)
                    if start <= t < node.prefix_len
                }
            )
            ids = list(self.prompt_ids[member][start : node.prefix_len])
            prefix = self.extend(prefix, ids, start, wanted)
        if up is None:
            prefix = self.root(prefix)
        self.prefixes[id(node)] = prefix
        return prefix

    def release(self, node: PrefixNode, n: int) -> None:
        """Count `n` prompts of `node` as started; drop the prefixes no waiting prompt needs any
        more."""
        current: PrefixNode | None = node
        while current is not None:
            self.remaining[id(current)] -= n
            if self.remaining[id(current)] == 0:
                self.prefixes.pop(id(current), None)
            current = self.parent.get(id(current))
