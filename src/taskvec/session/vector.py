"""A task vector as a value: per-layer (hidden,) tensors at one position, with where they came from.

Arithmetic is per layer in float32 (`a + b`, `a - b`, `0.5 * a`, `-a`, `a / 2`) over the layers
both operands have; vectors of different models, hidden sizes or positions are refused. A vector
saves to one safetensors file (provenance in its metadata) that loads without pickle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from taskvec.errors import TaskvecError
from taskvec.model.steer import Mode, Where, steering_hooks
from taskvec.session.atomic import atomic_write

FORMAT = "taskvec.TaskVector/1"


def _wrap(expression: str) -> str:
    """`expression` as an operand: a sum or difference gets parentheses."""
    return f"({expression})" if " + " in expression or " - " in expression else expression


def _scalar(factor: object) -> float | None:
    """`factor` as a float if it is a real number (not a bool), else None."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        return None
    return float(factor)


@dataclass(frozen=True, eq=False)
class TaskVector:
    """Block-output vectors `vectors[L]` (hidden,), float32 on the CPU, all read at `position`."""

    vectors: dict[int, torch.Tensor]
    position: str
    model: str
    hidden_size: int
    expression: str
    sessions: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.vectors:
            raise TaskvecError(f"task vector '{self.expression}' has no layers")
        clean: dict[int, torch.Tensor] = {}
        for layer in sorted(self.vectors):
            vector = self.vectors[layer].detach().to("cpu", torch.float32)
            if vector.shape != (self.hidden_size,):
                raise TaskvecError(
                    f"task vector '{self.expression}': layer {layer} has shape "
                    f"{tuple(vector.shape)}, expected ({self.hidden_size},)"
                )
            clean[int(layer)] = vector
        object.__setattr__(self, "vectors", clean)
        object.__setattr__(self, "position", str(self.position))
        object.__setattr__(self, "sessions", tuple(self.sessions))

    def __repr__(self) -> str:
        return (
            f"TaskVector({self.expression!r}, position={self.position!r}, layers={self.layers}, "
            f"model={self.model!r})"
        )

    @property
    def layers(self) -> list[int]:
        return list(self.vectors)

    def norm(self) -> dict[int, float]:
        """The L2 norm of each layer's vector."""
        return {layer: float(v.norm()) for layer, v in self.vectors.items()}

    def __add__(self, other: object) -> TaskVector:
        return self._combine(other, 1.0, "+")

    def __sub__(self, other: object) -> TaskVector:
        return self._combine(other, -1.0, "-")

    def __mul__(self, factor: object) -> TaskVector:
        if isinstance(factor, TaskVector):
            raise TaskvecError(
                f"cannot multiply two vectors ('{self.expression}' * '{factor.expression}'); "
                "multiply a vector by a number"
            )
        scale = _scalar(factor)
        if scale is None:
            return NotImplemented
        if not math.isfinite(scale):
            raise TaskvecError(f"cannot scale '{self.expression}' by {scale}: not a finite number")
        return self._with(
            {layer: v * scale for layer, v in self.vectors.items()},
            f"{scale:g} * {_wrap(self.expression)}",
            self.sessions,
        )

    __rmul__ = __mul__

    def __truediv__(self, divisor: object) -> TaskVector:
        scale = _scalar(divisor)
        if scale is None:
            return NotImplemented
        if scale == 0:
            raise TaskvecError(f"cannot divide '{self.expression}' by zero")
        return self._with(
            (self * (1.0 / scale)).vectors, f"{_wrap(self.expression)} / {scale:g}", self.sessions
        )

    def __neg__(self) -> TaskVector:
        return self._with((self * -1.0).vectors, f"-{_wrap(self.expression)}", self.sessions)

    def _combine(self, other: object, sign: float, op: str) -> TaskVector:
        """self + sign * other over the layers both have."""
        if not isinstance(other, TaskVector):
            if _scalar(other) is not None:
                raise TaskvecError(
                    f"cannot {'add' if op == '+' else 'subtract'} a number and a vector "
                    f"('{self.expression}' {op} {other}); scale a vector with *"
                )
            return NotImplemented
        self.check_compatible(other)
        layers = [layer for layer in self.vectors if layer in other.vectors]
        if not layers:
            raise TaskvecError(
                f"'{self.expression}' (layers {self.layers}) and '{other.expression}' (layers "
                f"{other.layers}) share no layer"
            )
        vectors = {layer: self.vectors[layer] + sign * other.vectors[layer] for layer in layers}
        sessions = tuple(dict.fromkeys(self.sessions + other.sessions))
        return self._with(vectors, f"{self.expression} {op} {_wrap(other.expression)}", sessions)

    def check_compatible(self, other: TaskVector) -> None:
        """Refuse in one line to combine vectors of different models, hidden sizes or positions."""
        for what, mine, theirs in (
            ("models", self.model, other.model),
            ("hidden sizes", self.hidden_size, other.hidden_size),
            ("positions", self.position, other.position),
        ):
            if mine != theirs:
                raise TaskvecError(
                    f"cannot combine vectors of different {what}: '{self.expression}' has "
                    f"{mine}, '{other.expression}' has {theirs}"
                )

    def _with(
        self, vectors: dict[int, torch.Tensor], expression: str, sessions: tuple[str, ...]
    ) -> TaskVector:
        return TaskVector(
            vectors, self.position, self.model, self.hidden_size, expression, sessions
        )

    def provenance(self) -> dict[str, Any]:
        """Everything but the tensors, as JSON-ready values (with the norm of each layer)."""
        return {
            "expression": self.expression,
            "sessions": list(self.sessions),
            "position": self.position,
            "model": self.model,
            "hidden_size": self.hidden_size,
            "layers": self.layers,
            "norm_per_layer": {str(layer): n for layer, n in self.norm().items()},
        }

    def save(self, path: str | Path) -> Path:
        """Write one safetensors file: `layer_{L}` tensors, provenance as JSON in its metadata."""
        path = Path(path)
        tensors = {f"layer_{layer}": v.contiguous() for layer, v in self.vectors.items()}
        meta = {"format": FORMAT, "provenance": json.dumps(self.provenance())}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TaskVector:
        """Read a file written by `save` (safetensors: no pickle is involved)."""
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise TaskvecError(
                        f"'{path}' is a safetensors file but not a saved task vector"
                    )
                tensors = {key: f.get_tensor(key) for key in f.keys()}
        except (OSError, SafetensorError) as exc:
            raise TaskvecError(f"cannot read a task vector from '{path}' ({exc})") from None
        try:
            info = json.loads(meta["provenance"])
            vectors = {int(key.removeprefix("layer_")): t for key, t in tensors.items()}
            fields = (info["position"], info["model"], int(info["hidden_size"]))
            return cls(vectors, *fields, info["expression"], tuple(info["sessions"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise TaskvecError(f"'{path}': a damaged task vector file ({exc!r})") from None

    @contextmanager
    def apply(
        self,
        model: nn.Module,
        layers: int | Sequence[int],
        mode: Mode = "add",
        scale: float = 1.0,
        where: Where = "last",
        rows: Sequence[int] | None = None,
    ) -> Iterator[None]:
        """Steer `model` at `layers` while the block is active (`model.steer.steering_hooks`)."""
        wanted = [layers] if isinstance(layers, int) else list(layers)
        missing = [layer for layer in wanted if layer not in self.vectors]
        if missing:
            raise TaskvecError(
                f"layers: task vector '{self.expression}' has no layer {missing[0]}; it has "
                f"{', '.join(map(str, self.layers))}"
            )
        with steering_hooks(
            model, {layer: self.vectors[layer] for layer in wanted}, mode, scale, where, rows
        ):
            yield
