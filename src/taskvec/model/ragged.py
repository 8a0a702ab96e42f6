"""Ragged rows of token ids as one batch: left-padded with positions and a mask, right-padded, or
packed into one row. Every forward loop builds its inputs here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Ragged:
    """Rows of tokens as one `(rows, width)` batch (on the CPU).

    `fed` marks the columns holding a row's tokens (the rest is padding, id 0); `first[r]` is
    where row r's first token sits in the flattened `(rows * width)` batch."""

    ids: torch.Tensor
    positions: torch.Tensor
    fed: torch.Tensor
    lens: list[int]
    first: list[int]

    @property
    def width(self) -> int:
        return int(self.ids.shape[1])

    def mask(self, before: int = 0) -> torch.Tensor:
        """The bool attention mask over `before` columns every row sees (a cache) and the batch's,
        `(rows, before + width)`."""
        return torch.cat([self.fed.new_ones(self.fed.shape[0], before), self.fed], dim=1)


def as_ids(ids: Sequence[int] | np.ndarray) -> torch.Tensor:
    """Token ids (list or array) as a 1-D int64 tensor."""
    return torch.as_tensor(np.asarray(ids, dtype=np.int64))


def left_padded(rows: Sequence[Sequence[int] | np.ndarray], starts: Sequence[int]) -> Ragged:
    """`rows[r]` at positions from `starts[r]`, right-aligned; a padding column takes its row's
    first position (masked out, it only keeps the rotary input in range)."""
    lens = [len(row) for row in rows]
    width = max(lens)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    positions = torch.tensor(list(starts), dtype=torch.long)[:, None].repeat(1, width)
    fed = torch.zeros(len(rows), width, dtype=torch.bool)
    for r, (row, n, start) in enumerate(zip(rows, lens, starts)):
        if n:
            ids[r, width - n :] = as_ids(row)
            positions[r, width - n :] = torch.arange(start, start + n)
            fed[r, width - n :] = True
    return Ragged(ids, positions, fed, lens, [r * width + width - n for r, n in enumerate(lens)])


def right_padded(rows: Sequence[Sequence[int] | np.ndarray], start: int) -> Ragged:
    """`rows` at positions from `start`, left-aligned, positions running on into the padding:
    causal attention alone keeps the padding out of every row's tokens (no mask)."""
    lens = [len(row) for row in rows]
    width = max(lens)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : lens[r]] = as_ids(row)
    positions = torch.arange(start, start + width)[None].expand(len(rows), -1)
    fed = torch.arange(width)[None] < torch.tensor(lens)[:, None]
    return Ragged(ids, positions, fed, lens, [r * width for r in range(len(rows))])


def packed(rows: Sequence[Sequence[int] | np.ndarray], start: int) -> Ragged:
    """`rows` back to back in one row (each a segment with positions from `start`; the attention
    keeps segments apart), no padding."""
    lens = [len(row) for row in rows]
    ids = torch.cat([as_ids(row) for row in rows])[None]
    positions = torch.cat([torch.arange(start, start + n) for n in lens])[None]
    fed = torch.ones(ids.shape, dtype=torch.bool)
    return Ragged(ids, positions, fed, lens, [sum(lens[:r]) for r in range(len(rows))])


def pad_front(mask: torch.Tensor, width: int) -> torch.Tensor:
    """`mask` (rows, columns) with False columns in front up to `width`."""
    extra = width - mask.shape[1]
    return mask if extra == 0 else torch.cat([mask.new_zeros(mask.shape[0], extra), mask], dim=1)
