"""Position specs resolve over the unpadded prompt; keys follow the naming convention."""

from __future__ import annotations

import pytest

from taskvec.errors import TaskvecError
from taskvec.positions import VectorKey, check_position, normalise_layer, resolve_position


@pytest.mark.parametrize(
    "spec,n,expected",
    [
        ("last", 7, 6),
        ("first", 7, 0),
        (0, 7, 0),
        (3, 7, 3),
        (6, 7, 6),
        (-1, 7, 6),
        (-2, 7, 5),
        (-7, 7, 0),
        ("last", 1, 0),
    ],
)
def test_resolve(spec: object, n: int, expected: int) -> None:
    assert resolve_position(spec, n, "s") == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [7, 100, -8])
def test_out_of_range_names_sample_length_and_position(spec: int) -> None:
    with pytest.raises(TaskvecError) as err:
        resolve_position(spec, 7, "train_12")
    msg = str(err.value)
    assert "train_12" in msg and "7 tokens" in msg and f"position {spec}" in msg


def test_check_position() -> None:
    assert check_position("last") == "last"
    assert check_position("-2") == -2
    assert check_position(5) == 5
    for bad in ("middle", True, "1.5"):
        with pytest.raises(TaskvecError, match="position"):
            check_position(bad)  # type: ignore[arg-type]


def test_layers_and_keys() -> None:
    assert normalise_layer(-1, 30) == 29
    assert normalise_layer(12, 30) == 12
    with pytest.raises(TaskvecError, match="layer 30 is out of range.*30 blocks"):
        normalise_layer(30, 30)
    with pytest.raises(TaskvecError):
        normalise_layer(-31, 30)
    assert str(VectorKey(12, -2)) == "layer_12_pos_-2"
    assert str(VectorKey(0, "last")) == "layer_0_pos_last"
