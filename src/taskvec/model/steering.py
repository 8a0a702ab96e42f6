"""Per-row steering of the residual stream during generation: the seam where an intervention plugs
into a generation step.

A `Steer` is one condition: vectors per layer, how they act (`mode`) and at which tokens (`where`).
Every row of a batch carries its own (or none), so a sweep of conditions decodes in one batch.
Before each forward (a prefix, the prompts' suffixes, a decode step with its drafts) the generator
tells `RowSteering.plan` which rows run and which of their input tokens are steered; the hooks on
the steered blocks then change exactly those (row, token) entries of the block's output, before the
next block reads it, as patching does. A steered token's row gives what it would alone: nothing else
in the batch is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from taskvec.model.capture import block_output
from taskvec.model.steer import Mode, Where, steer_hidden


@dataclass(frozen=True, eq=False)
class Steer:
    """One steering condition: `vectors` (layer -> (hidden,)) acting by `mode` x `scale` at `where`.

    `where`: `last` the last prompt token, `prompt` every prompt token, `generated` every
    generated token as it is fed back (drafts included), `all` both.
    """

    vectors: Mapping[int, torch.Tensor]
    mode: Mode = "add"
    scale: float = 1.0
    where: Where = "last"

    @property
    def in_prompt(self) -> bool:
        """Whether prompt tokens before the last are steered (then no unsteered prefix can be
        shared)."""
        return self.where in ("prompt", "all")

    @property
    def in_generated(self) -> bool:
        return self.where in ("generated", "all")

    @property
    def at_last_prompt_token(self) -> bool:
        """Whether the last prompt token is steered (every `where` but `generated`)."""
        return self.where != "generated"


def prompt_mask(steers: Sequence[Steer | None], lens: Sequence[int], width: int) -> torch.Tensor:
    """Steered columns of left-padded prompt tokens (the last `lens[r]` of `width` columns are row
    r's; the last column is its last prompt token), (rows, width) bool."""
    mask = torch.zeros(len(steers), width, dtype=torch.bool)
    for r, (steer, n) in enumerate(zip(steers, lens)):
        if steer is not None and steer.in_prompt:
            mask[r, width - n :] = True
        elif steer is not None and steer.at_last_prompt_token:
            mask[r, -1] = True
    return mask


def step_mask(
    steers: Sequence[Steer | None], fed: torch.Tensor, pending: Sequence[bool]
) -> torch.Tensor:
    """Steered columns of a decode step (`fed`, (rows, width) bool: which columns hold a row's
    tokens). A pending row's first fed column is its last prompt token (steered under `last`,
    `prompt` and `all`); every other fed token is generated (steered under `generated`, `all`)."""
    rows = torch.tensor([s is not None and s.in_generated for s in steers], dtype=torch.bool)
    mask = fed & rows[:, None]
    for r, (steer, first) in enumerate(zip(steers, pending)):
        if first:
            column = int(fed[r].long().argmax())
            mask[r, column] = steer is not None and steer.at_last_prompt_token
    return mask


_Todo = tuple[torch.Tensor, torch.Tensor, torch.Tensor, Steer]  # rows, columns, vector, steer


class RowSteering:
    """Hooks on the blocks some steer names, and the plan of the forward about to run (see the
    module docstring)."""

    def __init__(
        self, blocks: nn.ModuleList, steers: Sequence[Steer], device: torch.device
    ) -> None:
        self.blocks, self.device = blocks, device
        self._vectors = {
            id(s): {layer: v.to(device, torch.float32) for layer, v in s.vectors.items()}
            for s in steers
        }
        self.layers = sorted({layer for s in steers for layer in s.vectors})
        self._todo: dict[int, list[_Todo]] = {}

    def plan(self, steers: Sequence[Steer | None], mask: torch.Tensor) -> None:
        """The next forward's rows carry `steers`; row r's input columns where `mask[r]` (bool) are
        steered."""
        self._todo = {}
        if not bool(mask.any()):  # e.g. a decode step under `where: last`
            return
        groups: dict[int, tuple[Steer, list[int]]] = {}
        for r, steer in enumerate(steers):
            if steer is not None:
                groups.setdefault(id(steer), (steer, []))[1].append(r)
        for steer, members in groups.values():
            own = torch.zeros_like(mask)
            own[members] = mask[members]
            rows, cols = (t.to(self.device) for t in own.nonzero(as_tuple=True))
            if rows.numel():
                for layer, vector in self._vectors[id(steer)].items():
                    self._todo.setdefault(layer, []).append((rows, cols, vector, steer))

    def clear(self) -> None:
        self._todo = {}

    def _hook(self, layer: int) -> Callable[[nn.Module, tuple, torch.Tensor | tuple], None]:
        def hook(_module: nn.Module, _args: tuple, output: torch.Tensor | tuple) -> None:
            hidden = block_output(output)  # changed in place: the next block reads it
            for rows, cols, vector, steer in self._todo.get(layer, ()):
                hidden[rows, cols] = steer_hidden(
                    hidden[rows, cols], vector, steer.mode, steer.scale
                )

        return hook

    @contextmanager
    def installed(self) -> Iterator[RowSteering]:
        """The hooks, while the block runs; removed on every exit path."""
        handles = [
            self.blocks[layer].register_forward_hook(self._hook(layer)) for layer in self.layers
        ]
        try:
            yield self
        finally:
            self._todo = {}
            for handle in handles:
                handle.remove()
