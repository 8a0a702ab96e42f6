"""Forward hooks on decoder blocks: gather requested positions on the device, stop early."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import PreTrainedModel


class StopForward(Exception):
    """Raised by the deepest hook so the forward skips the blocks nobody asked for."""


def decoder_blocks(model: PreTrainedModel) -> nn.ModuleList:
    """The list of decoder blocks whose outputs are layers 0..n-1."""
    base = model.get_decoder() if hasattr(model, "get_decoder") else model
    blocks = getattr(base, "layers", None) or getattr(base, "h", None)
    if not isinstance(blocks, nn.ModuleList):
        raise TypeError(f"cannot find the decoder blocks of {type(model).__name__}")
    return blocks


def block_output(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The residual stream a block returns (a tensor, or the first item of a tuple)."""
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def capture(
    blocks: nn.ModuleList, layers: list[int], index: torch.Tensor | None, stop_after: int | None
) -> Iterator[dict[int, torch.Tensor]]:
    """Record rows `index` of the flattened (batch * tokens, hidden) output of each block in `layers`.

    Rows are gathered on the device inside the hook, so no (batch, tokens,
    hidden) tensor outlives its block. If `stop_after` is set, its hook raises
    StopForward; the caller catches it. Hooks are removed on every exit path.
    """
    captured: dict[int, torch.Tensor] = {}

    def make_hook(layer: int) -> Callable[[nn.Module, tuple, torch.Tensor | tuple], None]:
        def hook(_module: nn.Module, _args: tuple, output: torch.Tensor | tuple) -> None:
            if index is not None and layer in layers:
                captured[layer] = block_output(output).flatten(0, 1).index_select(0, index)
            if layer == stop_after:
                raise StopForward

        return hook

    watched = sorted(set(layers) | ({stop_after} if stop_after is not None else set()))
    handles = [blocks[layer].register_forward_hook(make_hook(layer)) for layer in watched]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
