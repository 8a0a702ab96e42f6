"""Linear layers on oneDNN-prepacked weights while generation runs on the CPU in float32.

A decode step multiplies a few rows by every weight matrix. MKL's float32 GEMM, which
`nn.Linear` calls on the CPU, is slow at 2-32 rows (on the project's 2-core machine a
576x1536 product costs as much at 2 rows as 8 rows cost oneDNN, and the 49152-wide
output layer 2-4x more), while oneDNN with its weights reordered once into its blocked
layout streams them at close to memory speed. Inside `packed_linears(model)` every plain
`nn.Linear` with a float32 CPU weight calls oneDNN on its packed copy: the same product
in float32, summed in another order (relative differences around 1e-6, like a change of
batch size). The model itself is not changed: the packed copies live for the block only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

MEMORY_SHARE = (
    0.5  # pack only when the copies take at most this share of the memory still available
)


def _available_bytes() -> int | None:
    """Memory available to new allocations (Linux: free pages), None where it cannot be told."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def packable(model: nn.Module) -> list[nn.Linear]:
    """The layers `packed_linears` packs: plain `nn.Linear` with a float32 CPU weight, when torch has oneDNN's
    packed linear and their copies fit in memory (an empty list otherwise)."""
    if not torch.backends.mkldnn.is_available() or not hasattr(
        torch.ops.mkldnn, "_linear_pointwise"
    ):
        return []
    layers = [
        m
        for m in model.modules()
        if type(m) is nn.Linear
        and m.weight.dtype == torch.float32
        and m.weight.device.type == "cpu"
    ]
    available = _available_bytes()
    needed = sum(m.weight.numel() * m.weight.element_size() for m in layers)
    return layers if available is None or needed <= MEMORY_SHARE * available else []


class _Packed:
    """`layer`'s forward on its weight reordered for oneDNN."""

    def __init__(self, layer: nn.Linear) -> None:
        self.weight = torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach())
        self.bias = layer.bias.detach() if layer.bias is not None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


@contextmanager
def packed_linears(model: nn.Module) -> Iterator[int]:
    """Within the block, `packable(model)` layers run on packed weights; yields how many. Restored on exit."""
    layers = packable(model)
    try:
        for layer in layers:
            layer.forward = _Packed(layer)  # type: ignore[method-assign,assignment]
        yield len(layers)
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)
