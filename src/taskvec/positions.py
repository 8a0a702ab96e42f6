"""Token position specs -> absolute token indices, and the one vector-key type (layer, position)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from taskvec.errors import TaskvecError

Position = int | str
POSITION_WORDS = ("last", "first")


def check_position(spec: Position) -> Position:
    """Accept 'last', 'first' or an int (strings of ints become ints); anything else is an error."""
    if isinstance(spec, bool):
        raise TaskvecError(
            f"token_positions: {spec!r} is not a position; use 'last', 'first' or an integer"
        )
    if isinstance(spec, int):
        return spec
    text = str(spec).strip()
    if text in POSITION_WORDS:
        return text
    try:
        return int(text)
    except ValueError:
        raise TaskvecError(
            f"token_positions: unknown position {spec!r}; use 'last', 'first' or an integer "
            "(negative counts from the end)"
        ) from None


def resolve_position(spec: Position, n_tokens: int, sample_id: str) -> int:
    """Index of `spec` in an unpadded prompt of `n_tokens` tokens."""
    if spec == "last":
        index = n_tokens - 1
    elif spec == "first":
        index = 0
    else:
        index = int(spec) if int(spec) >= 0 else n_tokens + int(spec)
    if not 0 <= index < n_tokens:
        raise TaskvecError(
            f"token_positions: position {spec} is out of range for sample '{sample_id}' with "
            f"{n_tokens} tokens; "
            f"use a position within -{n_tokens}..{n_tokens - 1}"
        )
    return index


def normalise_layer(layer: int, n_layers: int) -> int:
    """Non-negative block index of `layer` (negative counts from the end)."""
    if not -n_layers <= layer < n_layers:
        raise TaskvecError(
            f"layers: layer {layer} is out of range for a model with {n_layers} blocks; use "
            f"0..{n_layers - 1} "
            f"or -{n_layers}..-1"
        )
    return layer % n_layers


KEY_PATTERN = re.compile(r"layer_(\d+)_pos_(last|first|-?\d+)")


@dataclass(frozen=True)
class VectorKey:
    """The name of one vector: block `layer` (non-negative) read at `position` as written in the config.

    `str(key)` is the file key `layer_{L}_pos_{P}` (`layer_12_pos_-2`); `key.std` names its standard
    deviation.
    """

    layer: int
    position: Position

    def __str__(self) -> str:
        return f"layer_{self.layer}_pos_{self.position}"

    @property
    def std(self) -> str:
        return f"{self}_std"

    @classmethod
    def parse(cls, text: str) -> VectorKey:
        """`layer_{L}_pos_{P}` -> VectorKey(L, P); P becomes an int unless it is `last` or `first`."""
        match = KEY_PATTERN.fullmatch(text)
        if match is None:
            raise TaskvecError(
                f"'{text}' is not a vector key; keys look like layer_12_pos_last or layer_12_pos_-2"
            )
        return cls(int(match.group(1)), check_position(match.group(2)))
