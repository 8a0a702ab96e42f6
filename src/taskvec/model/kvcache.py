"""The one place that touches transformers' KV-cache internals: build a cache from tensors, read it back."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn
from transformers import DynamicCache

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per block: keys and values, (rows, kv_heads, tokens, head_dim)


def cache_kw(module: nn.Module) -> str:
    """The forward's cache argument: `cache` in newer transformers, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def to_cache(kv: KV | None, rows: int | None = None) -> DynamicCache:
    """A DynamicCache holding `kv` (empty when None), its single row expanded to `rows` rows if given."""
    if kv is None:
        return DynamicCache()
    if rows is not None:
        kv = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in kv]
    return DynamicCache(ddp_cache_data=kv)


def from_cache(cache: DynamicCache, n_blocks: int | None = None) -> KV:
    """The keys and values a cache holds, for its first `n_blocks` blocks (all when None)."""
    layers = cache.layers if n_blocks is None else cache.layers[:n_blocks]
    return [(cast(torch.Tensor, layer.keys), cast(torch.Tensor, layer.values)) for layer in layers]  # type: ignore[union-attr]


def select_rows(kv: KV, rows: Sequence[int] | torch.Tensor) -> KV:
    """Only the batch rows `rows` of every block's keys and values."""
    index = torch.as_tensor(rows, dtype=torch.long, device=kv[0][0].device) if not isinstance(rows, torch.Tensor) else rows
    return [(k.index_select(0, index), v.index_select(0, index)) for k, v in kv]


def left_pad(kv: KV, tokens: int) -> KV:
    """`kv` with `tokens` zero columns in front (the caller masks them out)."""
    if tokens == 0:
        return kv
    return [tuple(torch.cat([t.new_zeros(*t.shape[:2], tokens, t.shape[3]), t], dim=2) for t in pair) for pair in kv]  # type: ignore[misc]


def concat_rows(a: KV, b: KV) -> KV:
    """Rows of `a` then rows of `b`, both already of the same token width."""
    return [(torch.cat([ka, kb]), torch.cat([va, vb])) for (ka, va), (kb, vb) in zip(a, b)]


def drop_front(kv: KV, tokens: int) -> KV:
    """`kv` without its first `tokens` columns."""
    return kv if tokens == 0 else [(k[:, :, tokens:], v[:, :, tokens:]) for k, v in kv]
