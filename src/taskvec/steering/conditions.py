"""The conditions of a steering run: the unsteered baseline, then one per (layer, scale), each
followed by its random-direction control when asked for."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from taskvec.errors import TaskvecError
from taskvec.model.steering import Steer
from taskvec.session.vector import TaskVector
from taskvec.steering.config import SteerConfig

BASELINE = "baseline"


@dataclass(frozen=True)
class Condition:
    """One condition: its directory name under conditions/, what it steers, and the steer (None:
    baseline)."""

    name: str
    layer: int | None
    scale: float
    control: str  # "none", "random" (a random direction of the vector's norm) or "baseline"
    steer: Steer | None


def check_layers(layers: list[int], vector: TaskVector, n_blocks: int | None) -> list[int]:
    """The config's layers as non-negative block indices, each one the vector has; `n_blocks` None:
    before the model is known (negative layers are then checked later)."""
    out = []
    for layer in layers:
        if layer < 0 and n_blocks is None:
            continue
        block = layer + n_blocks if layer < 0 and n_blocks is not None else layer
        if n_blocks is not None and not 0 <= block < n_blocks:
            raise TaskvecError(f"layers: {layer} is outside the model's {n_blocks} blocks")
        if block not in vector.vectors:
            raise TaskvecError(
                f"layers: the vector '{vector.expression}' has no layer {layer}; its sessions have "
                f"layers {', '.join(map(str, vector.layers))}"
            )
        out.append(block)
    return out


def random_direction(vector: torch.Tensor, seed: int, layer: int) -> torch.Tensor:
    """A seeded random direction with `vector`'s norm (one per seed and layer)."""
    g = torch.Generator().manual_seed(seed * 100_003 + layer)
    direction = torch.randn(vector.shape, generator=g, dtype=torch.float32)
    return direction * (vector.float().norm() / direction.norm())


def condition_name(layer: int, cfg: SteerConfig, scale: float, control: bool) -> str:
    """`layer12_add_x4`, `layer12_ablate_x0_random`, `layer12_replace`."""
    how = cfg.mode if cfg.mode == "replace" else f"{cfg.mode}_x{scale:g}"
    return f"layer{layer}_{how}{'_random' if control else ''}"


def build_conditions(cfg: SteerConfig, vector: TaskVector, layers: list[int]) -> list[Condition]:
    """The baseline, then per layer and scale the vector's condition and (control: random) its
    control."""
    out = [Condition(BASELINE, None, 0.0, "baseline", None)]
    controls = [False, True] if cfg.control == "random" else [False]
    for layer in layers:
        v = vector.vectors[layer]
        for scale in cfg.sweep:
            for control in controls:
                used = random_direction(v, cfg.seed, layer) if control else v
                steer = Steer({layer: used}, cfg.mode, scale, cfg.where)
                name = condition_name(layer, cfg, scale, control)
                out.append(Condition(name, layer, scale, "random" if control else "none", steer))
    return out
