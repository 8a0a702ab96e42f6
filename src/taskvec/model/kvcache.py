"""The one place that touches transformers' KV-cache internals: build a cache from tensors, read it back."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

# per block: keys and values, (rows, kv_heads, tokens, head_dim)
KV = list[tuple[torch.Tensor, torch.Tensor]]


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
    index = (
        torch.as_tensor(rows, dtype=torch.long, device=kv[0][0].device)
        if not isinstance(rows, torch.Tensor)
        else rows
    )
    return [(k.index_select(0, index), v.index_select(0, index)) for k, v in kv]


def left_pad(kv: KV, tokens: int) -> KV:
    """`kv` with `tokens` zero columns in front (the caller masks them out)."""
    if tokens == 0:
        return kv
    return [
        tuple(torch.cat([t.new_zeros(*t.shape[:2], tokens, t.shape[3]), t], dim=2) for t in pair)  # type: ignore[misc]
        for pair in kv
    ]


def concat_rows(a: KV, b: KV) -> KV:
    """Rows of `a` then rows of `b`, both already of the same token width."""
    return [(torch.cat([ka, kb]), torch.cat([va, vb])) for (ka, va), (kb, vb) in zip(a, b)]


class _GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are the front of buffers with spare columns: `update`
    writes into that room in place, where DynamicLayer concatenates (a copy of the whole cache at
    every decode step)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        super().__init__()
        self.device, self.is_initialized, self.room = keys.device, True, room
        self.buffers = [_with_room(keys, room), _with_room(values, room)]
        self._show(keys.shape[2])

    def _show(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Expose the first `length` columns as the layer's keys and values."""
        keys, values = (b[:, :, :length] for b in self.buffers)
        self.length, self.keys, self.values = length, keys, values
        return keys, values

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.length, self.length + key_states.shape[2]
        if end > self.buffers[0].shape[2]:  # out of room: new buffers with `room` spare columns
            self.buffers = [
                _with_room(b[:, :, :start], max(self.room, end - start)) for b in self.buffers
            ]
        self.buffers[0][:, :, start:end] = key_states
        self.buffers[1][:, :, start:end] = value_states
        return self._show(end)

    def keep(self, rows: torch.Tensor, front: int) -> None:
        """Only batch rows `rows`, without the first `front` columns (the room stays)."""
        self.buffers = [b.index_select(0, rows)[:, :, front:] for b in self.buffers]
        self._show(self.length - front)


def _with_room(t: torch.Tensor, room: int) -> torch.Tensor:
    """A copy of `t` followed by `room` unset columns."""
    out = t.new_empty(*t.shape[:2], t.shape[2] + room, t.shape[3])
    out[:, :, : t.shape[2]] = t
    return out


def growing_cache(kv: KV, room: int) -> DynamicCache:
    """A DynamicCache holding (a copy of) `kv` whose updates write in place, `room` columns
    before it reallocates."""
    cache = DynamicCache()
    cache.layers = [_GrowingLayer(k, v, room) for k, v in kv]
    return cache


def keep_rows(cache: DynamicCache, rows: Sequence[int], front: int) -> None:
    """Cut a `growing_cache` down to batch rows `rows`, without its first `front` columns."""
    index = torch.as_tensor(rows, dtype=torch.long, device=cache.layers[0].device)  # type: ignore[union-attr]
    for layer in cache.layers:
        cast(_GrowingLayer, layer).keep(index, front)


def cached_tokens(cache: object | None) -> int:
    """How many tokens a forward's cache argument already holds (0 for none or an empty cache)."""
    get = getattr(cache, "get_seq_length", None)
    return int(get()) if get is not None else 0
