"""The shared-prefix service of every forward loop (extraction, generation, patching): the prefix
plan, the suffix batches of its nodes, and the prefixes themselves, each computed once on its
parent's KV cache and dropped as soon as no waiting prompt needs it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from taskvec.model.capture import StopForward, capture, decoder_blocks
from taskvec.model.kvcache import KV, cache_kw, from_cache, to_cache
from taskvec.model.prefix import PrefixNode, plan_prefix_tree
from taskvec.model.ragged import as_ids

Ids = Sequence[int] | np.ndarray


@dataclass(frozen=True)
class Prefix:
    """A computed prompt prefix: its length, the KV cache (one row) of its tokens (after the root
    prefix when the root is read as one shared copy), and the vectors read inside it, by absolute
    token index."""

    length: int = 0
    kv: KV | None = None
    known: dict[int, torch.Tensor] = field(default_factory=dict)


# (the prefix below, the new token ids, token indices to read among them) -> the longer prefix
Extend = Callable[[Prefix, Ids, list[int]], Prefix]


def plan(prompt_ids: Sequence[Ids], prefix_cache: bool = True) -> PrefixNode:
    """The prefix tree over `prompt_ids` (positions into it): which prompts share how many leading
    tokens, each keeping at least its last token to run; a bare root when prefix reuse is off."""
    if not prefix_cache:
        return PrefixNode(0, list(range(len(prompt_ids))))
    return plan_prefix_tree(prompt_ids, [len(ids) - 1 for ids in prompt_ids])


def make_batches(
    lengths: dict[int, int], max_tokens: int, max_samples: int, packed: bool
) -> list[list[int]]:
    """Length-sorted batches within `max_tokens`: summed lengths if packed, else samples x longest."""
    batches: list[list[int]] = []
    used = 0
    for i in sorted(lengths, key=lambda k: -lengths[k]):
        current = batches[-1] if batches else []
        if packed:
            size = used + lengths[i]
        else:  # padded to the batch's first (longest) sample
            size = (len(current) + 1) * lengths[current[0]] if current else lengths[i]
        if current and len(current) < max_samples and size <= max_tokens:
            current.append(i)
            used = size
        else:
            batches.append([i])
            used = lengths[i]
    return batches


def node_batches(
    tree: PrefixNode, lengths: Sequence[int], max_tokens: int, max_samples: int, packed: bool
) -> list[tuple[PrefixNode, list[int]]]:
    """Every node's suffix batches (`make_batches` over its members' tokens after its prefix), in
    plan order."""
    return [
        (node, batch)
        for node in tree.walk()
        for batch in make_batches(
            {m: lengths[m] - node.prefix_len for m in node.members}, max_tokens, max_samples, packed
        )
    ]


class PrefixCache:
    """The prefixes of `tree` over `prompt_ids`, each computed by `extend` on its parent's when a
    prompt first needs it, and dropped once every `waiting` prompt (positions into `prompt_ids`)
    under it has started.

    `wanted(m)` lists the token indices of prompt m to read: those inside a prefix are read while
    it is computed (into `Prefix.known`). `root` may take the root prefix over (generation reads
    its one copy from every row)."""

    def __init__(
        self,
        tree: PrefixNode,
        prompt_ids: Sequence[Ids],
        extend: Extend,
        waiting: Collection[int],
        wanted: Callable[[int], Sequence[int]] = lambda m: (),
        root: Callable[[Prefix], Prefix] | None = None,
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
            id(n): sum(m in waiting for d in n.walk() for m in d.members) for n in tree.walk()
        }
        self.prefixes: dict[int, Prefix] = {}

    def get(self, node: PrefixNode) -> Prefix:
        """`node`'s prefix, computed once on top of its parent's."""
        if id(node) in self.prefixes:
            return self.prefixes[id(node)]
        up = self.parent.get(id(node))
        prefix = self.get(up) if up is not None else Prefix()
        if node.prefix_len > prefix.length:
            prefix = self._extend(node, prefix)
        if up is None and self.root is not None:
            prefix = self.root(prefix)
        self.prefixes[id(node)] = prefix
        return prefix

    def _extend(self, node: PrefixNode, below: Prefix) -> Prefix:
        """`below` extended to `node`'s prefix, reading what any prompt under `node` wants there."""
        start, end = below.length, node.prefix_len
        members = [m for n in node.walk() for m in n.members]
        wanted = sorted({t for m in members for t in self.wanted(m) if start <= t < end})
        return self.extend(below, self.prompt_ids[members[0]][start:end], wanted)

    def release(self, node: PrefixNode, n: int) -> None:
        """Count `n` prompts of `node` as started; drop the prefixes no waiting prompt needs any
        more."""
        current: PrefixNode | None = node
        while current is not None:
            self.remaining[id(current)] -= n
            if self.remaining[id(current)] == 0:
                self.prefixes.pop(id(current), None)
            current = self.parent.get(id(current))

    def batches(
        self, batches: Iterable[tuple[PrefixNode, list[int]]]
    ) -> Iterator[tuple[list[int], Prefix]]:
        """Each batch of a node's prompts with the node's prefix, released once the batch is
        taken."""
        for node, batch in batches:
            yield batch, self.get(node)
            self.release(node, len(batch))


class PrefixForward:
    """Extends a prefix: its new tokens run as one row on the parent's KV cache, reading the block
    outputs of `layers` at the wanted tokens, stopped after block `stop_after` if given (the cache
    then holds blocks 0..stop_after)."""

    def __init__(
        self, model: PreTrainedModel, layers: Sequence[int] = (), stop_after: int | None = None
    ) -> None:
        self.base = model.get_decoder()
        self.blocks = decoder_blocks(model)
        self.cache_kw = cache_kw(self.base)
        self.layers, self.stop_after = list(layers), stop_after
        self.device = next(model.parameters()).device

    @torch.inference_mode()
    def __call__(self, parent: Prefix, ids: Ids, wanted: list[int], **kwargs: Any) -> Prefix:
        """`parent` extended by `ids`; `kwargs` go to the forward (a shared root prefix)."""
        start, device = parent.length, self.device
        cache = to_cache(parent.kv)
        index = torch.tensor([t - start for t in wanted], device=device) if wanted else None
        with capture(self.blocks, self.layers, index, self.stop_after) as captured:
            try:
                self.base(
                    input_ids=as_ids(ids)[None].to(device),
                    position_ids=torch.arange(start, start + len(ids), device=device)[None],
                    use_cache=True,
                    **{self.cache_kw: cache},
                    **kwargs,
                )
            except StopForward:
                pass
        known = dict(parent.known)
        for j, t in enumerate(wanted):
            known[t] = torch.stack([captured[layer][j].to(device) for layer in self.layers])
        blocks = None if self.stop_after is None else self.stop_after + 1
        return Prefix(start + len(ids), from_cache(cache, blocks), known)
