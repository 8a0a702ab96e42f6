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


class _GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are a window of buffers with spare rows and columns:
    `update` writes into the column room in place (where DynamicLayer concatenates, a copy of the
    whole cache at every decode step), rows join into finished rows' places or spare rows, and
    the last rows fill the places left. The window is rows `[:rows]`, columns `[front:length]`.
    Every column holds finite values (new buffers are zeros, old columns what the model wrote),
    so a masked column never leaks NaN into attention."""

    def __init__(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        room: int,
        rows: int,
        index: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.device, self.is_initialized, self.room = keys.device, True, room
        self.rows, self.front, self.length = 0, 0, 0
        self.buffers = [keys.new_zeros(0, *keys.shape[1:]), values.new_zeros(0, *keys.shape[1:])]
        # the rows the buffers keep room for (spare rows beyond the window's)
        self.limit = max(rows, keys.shape[0] if index is None else len(index))
        self._grow(self.limit, keys.shape[2])
        self.add(keys, values, index, grow=False)

    def _grow(self, rows: int, columns: int) -> None:
        """New buffers (zeros) with room for `rows` rows and `columns` columns in front of the
        window, and the window copied over."""
        width = self.length - self.front
        shape = self.buffers[0].shape
        out = [
            b.new_zeros(rows, shape[1], columns + width + self.room, shape[3]) for b in self.buffers
        ]
        for new, old in zip(out, self.buffers):
            new[: self.rows, :, columns : columns + width] = old[
                : self.rows, :, self.front : self.length
            ]
        self.buffers, self.front, self.length = out, columns, columns + width

    def _make_room(self, n: int) -> None:
        """Room for `n` columns after the window: the window slides to the buffers' first column
        when that frees at least half the room (the buffers are reused: no allocation, no page
        faults), else new buffers with `room` spare columns for the rows there are (rows that
        join later grow them)."""
        self.room = max(self.room, n)
        width = self.length - self.front
        if self.buffers[0].shape[2] - width >= max(n, self.room // 2):
            for b in self.buffers:
                live = b[: self.rows]
                # chunks of `front` columns, left to right: a chunk never reads a written column
                for start in range(0, width, self.front):
                    end = min(start + self.front, width)
                    live[:, :, start:end] = live[:, :, self.front + start : self.front + end]
            self.front, self.length = 0, width
        else:
            self._grow(self.rows, 0)

    def _show(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Expose the window as the layer's keys and values."""
        keys, values = (b[: self.rows, :, self.front : self.length] for b in self.buffers)
        self.keys, self.values = keys, values
        return keys, values

    @torch.inference_mode()
    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.length + key_states.shape[2] > self.buffers[0].shape[2]:
            self._make_room(key_states.shape[2])
        start, end = self.length, self.length + key_states.shape[2]
        self.buffers[0][: self.rows, :, start:end] = key_states
        self.buffers[1][: self.rows, :, start:end] = value_states
        self.length = end
        return self._show()

    def add(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        index: Sequence[int] | None = None,
        places: Sequence[int] | None = None,
        grow: bool = True,
    ) -> None:
        """New rows, row i `keys[index[i]]` (all rows of `keys` when None) written into batch row
        `places[i]` (rows after the window's when None: finished rows' places, then new ones),
        their last column at the window's last (the window widens in front when they are wider;
        the columns before theirs are the caller's to mask)."""
        index = range(keys.shape[0]) if index is None else index
        places = range(self.rows, self.rows + len(index)) if places is None else places
        rows, width = max(self.rows, max(places) + 1), keys.shape[2]
        capacity = self.buffers[0].shape[0]
        if grow and (rows > capacity or width > self.length):
            more = capacity if rows <= capacity else max(rows, min(2 * self.rows, self.limit))
            self._grow(more, max(width - (self.length - self.front), 0))
        self.front = min(self.front, self.length - width) if self.rows else self.length - width
        columns = slice(self.length - width, self.length)
        for dst, src, n in _runs(places, index):  # no gathered copy of the new rows
            for b, t in zip(self.buffers, (keys, values)):
                b[dst : dst + n, :, columns] = t[src]
        self.rows = rows
        self._show()

    def keep(self, rows: torch.Tensor, front: int) -> None:
        """Only batch rows `rows`, in that order, without the window's first `front` columns (only
        rows that change place are copied)."""
        moved = (rows != torch.arange(len(rows), device=rows.device)).nonzero().flatten()
        self.front += front
        for b in self.buffers:
            window = b[:, :, self.front : self.length]
            window[moved] = window[rows[moved]]
        self.rows = len(rows)
        self._show()


def _runs(places: Sequence[int], index: Sequence[int]) -> list[tuple[int, slice, int]]:
    """Row `index[i]` to row `places[i]` as runs (first place, source rows, length): consecutive
    places taking one repeated row or consecutive rows, so each run is one copy."""
    out: list[tuple[int, slice, int]] = []
    i = 0
    while i < len(index):
        j, first = i + 1, index[i]
        step = 0 if j < len(index) and index[j] == first else 1
        while (
            j < len(index) and places[j] == places[i] + j - i and index[j] == first + step * (j - i)
        ):
            j += 1
        out.append((places[i], slice(first, first + (j - i if step else 1)), j - i))
        i = j
    return out


@torch.inference_mode()
def growing_cache(
    kv: KV, room: int, rows: int = 0, index: Sequence[int] | None = None
) -> DynamicCache:
    """A DynamicCache holding (a copy of) `kv`, its rows `index` if given, whose updates write in
    place (`room` spare columns; out of them, the window slides back or the buffers grow), and room
    for `rows` rows (see `add_rows`)."""
    cache = DynamicCache()
    cache.layers = [_GrowingLayer(k, v, room, rows, index) for k, v in kv]
    return cache


@torch.inference_mode()
def add_rows(
    cache: DynamicCache,
    kv: KV,
    index: Sequence[int] | None = None,
    places: Sequence[int] | None = None,
) -> None:
    """Add the rows of `kv` (its rows `index` if given, repeats allowed) to a `growing_cache`,
    right-aligned with its rows: into batch rows `places` (finished rows' places, then new rows),
    after its rows when None."""
    for layer, (k, v) in zip(cache.layers, kv):
        cast(_GrowingLayer, layer).add(k, v, index, places)


@torch.inference_mode()
def keep_rows(cache: DynamicCache, rows: Sequence[int], front: int) -> None:
    """Cut a `growing_cache` down to batch rows `rows`, without its first `front` columns."""
    index = torch.as_tensor(rows, dtype=torch.long, device=cache.layers[0].device)  # type: ignore[union-attr]
    for layer in cache.layers:
        cast(_GrowingLayer, layer).keep(index, front)


def cached_tokens(cache: object | None) -> int:
    """How many tokens a forward's cache argument already holds (0 for none or an empty cache)."""
    get = getattr(cache, "get_seq_length", None)
    return int(get()) if get is not None else 0
