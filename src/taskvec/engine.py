"""The forward loop: shared-prefix KV reuse, packed suffixes, on-device gathering."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel

from taskvec.capture import StopForward, capture, decoder_blocks
from taskvec.prefix import PrefixNode, plan_prefix_tree


@dataclass(frozen=True)
class Item:
    """One tokenised prompt and the absolute token indices to read, in position order."""

    idx: int
    ids: Sequence[int]
    token_indices: Sequence[int]


KV = list[tuple[torch.Tensor, torch.Tensor]]


def _first_member(node: PrefixNode) -> int:
    """Any prompt under `node` (all share its prefix)."""
    return next(n.members[0] for n in node.walk() if n.members)


@dataclass(frozen=True)
class BatchResult:
    """Vectors for a batch: `vectors[i]` is (n_layers, n_positions, hidden) float32 on CPU."""

    idxs: list[int]
    vectors: torch.Tensor


def pack_rows(lengths: dict[int, int], max_tokens: int, max_samples: int) -> list[list[int]]:
    """First-fit decreasing: rows of samples whose total length stays within `max_tokens`."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(lengths, key=lambda k: -lengths[k]):
        for r, free in enumerate(room):
            if lengths[i] <= free and len(rows[r]) < max_samples:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(max_tokens - lengths[i])
    return rows


def packed_mask(seg_lens: list[int], prefix_len: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Additive (1, 1, S, prefix+S) mask: every token sees the prefix and, causally, its own segment."""
    seg = torch.repeat_interleave(torch.arange(len(seg_lens), device=device), torch.tensor(seg_lens, device=device))
    pos = torch.arange(seg.numel(), device=device)
    allowed = (seg[:, None] == seg[None, :]) & (pos[None, :] <= pos[:, None])
    allowed = torch.cat([allowed.new_ones(seg.numel(), prefix_len), allowed], dim=1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[None, None]


class Extractor:
    """Runs prompts through a model and returns hidden states at chosen blocks and tokens.

    Prompts sharing a token prefix reuse one KV cache of it; their suffixes are
    packed into one row (no padding) with a block-diagonal causal mask, so each
    token sees exactly what it would in its own full forward pass.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        layers: list[int],
        max_batch_tokens: int,
        batch_size: int,
        prefix_cache: bool = True,
    ) -> None:
        self.model = model
        self.base = model.get_decoder()
        self.blocks = decoder_blocks(model)
        self.layers = layers
        self.deepest = max(layers)
        self.max_batch_tokens = max_batch_tokens
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache
        params = inspect.signature(self.base.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def plan(self, items: Sequence[Item]) -> PrefixNode:
        """The prefix tree over `items` (positions into it); a bare root when prefix reuse is off."""
        if not self.prefix_cache:
            return PrefixNode(0, list(range(len(items))))
        return plan_prefix_tree([it.ids for it in items], [min(it.token_indices) for it in items])

    def run(self, items: Sequence[Item]) -> Iterator[BatchResult]:
        """Yield results batch by batch (order follows the plan, not the input)."""
        yield from self._run_node(items, self.plan(items), None, 0)

    def _run_node(self, items: Sequence[Item], node: PrefixNode, parent: KV | None, parent_len: int) -> Iterator[BatchResult]:
        kv = parent
        if node.prefix_len > parent_len:
            ids = items[_first_member(node)].ids
            kv = self._extend_kv(parent, ids[parent_len : node.prefix_len], parent_len)
        lengths = {m: len(items[m].ids) - node.prefix_len for m in node.members}
        for row in pack_rows(lengths, self.max_batch_tokens, self.batch_size):
            yield self._forward_row([items[m] for m in row], node.prefix_len, kv)
        for child in node.children:
            yield from self._run_node(items, child, kv, node.prefix_len)

    @torch.inference_mode()
    def _extend_kv(self, parent: KV | None, ids: Sequence[int], start: int) -> KV:
        """Keys and values of blocks 0..deepest after appending `ids` to the parent prefix."""
        cache = DynamicCache(ddp_cache_data=parent) if parent is not None else DynamicCache()
        input_ids = torch.tensor([list(ids)], device=self.device)
        positions = torch.arange(start, start + len(ids), device=self.device)[None]
        with capture(self.blocks, [], None, self.deepest):
            try:
                self.base(input_ids=input_ids, position_ids=positions, use_cache=True, **{self.cache_kw: cache})
            except StopForward:
                pass
        return [(layer.keys, layer.values) for layer in cache.layers[: self.deepest + 1]]

    @torch.inference_mode()
    def _forward_row(
        self, row: list[Item], prefix_len: int, prefix: KV | None
    ) -> BatchResult:
        device = self.device
        seg_lens = [len(it.ids) - prefix_len for it in row]
        input_ids = torch.tensor([[t for it in row for t in it.ids[prefix_len:]]], device=device)
        positions = torch.cat([torch.arange(prefix_len, prefix_len + n) for n in seg_lens])[None].to(device)
        offsets = [sum(seg_lens[:i]) - prefix_len for i in range(len(row))]
        index = torch.tensor([off + t for off, it in zip(offsets, row) for t in it.token_indices], device=device)
        kwargs = {}
        if prefix is not None:
            kwargs[self.cache_kw] = DynamicCache(ddp_cache_data=prefix)
        mask = packed_mask(seg_lens, prefix_len, self.model.dtype, device)
        with capture(self.blocks, self.layers, index, self.deepest) as captured:
            try:
                self.base(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=prefix is not None, **kwargs)
            except StopForward:
                pass
        n_pos = len(row[0].token_indices)
        stacked = torch.stack([captured[layer] for layer in self.layers])  # (L, n*P, H)
        vectors = stacked.view(len(self.layers), len(row), n_pos, -1).transpose(0, 1)
        return BatchResult([it.idx for it in row], vectors.float().cpu())
