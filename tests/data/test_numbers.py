"""parse_number reads the ways financial answers are written, and rejects the rest."""

from __future__ import annotations

import numpy as np
import pytest

from taskvec.data import parse_number
from taskvec.data.numbers import format_number, normalize_number_text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("$1,234.50", 1234.5),
        ("(3.4)", -3.4),
        ("12%", 12.0),
        ("-0.5", -0.5),
        ("1.2e3", 1200.0),
        ("  42 ", 42.0),
        ("-$1,234", -1234.0),
        ("$-1,234", -1234.0),
        ("($1,000,000.25)", -1000000.25),
        ("$ 5829", 5829.0),
        ("+7", 7.0),
        (".5", 0.5),
        ("12.", 12.0),
        ("\u22122.5", -2.5),
        ("€3.20", 3.2),
        ("-12.5 %", -12.5),
    ],
)
def test_parses_written_numbers(text: str, value: float) -> None:
    assert parse_number(text) == pytest.approx(value, abs=0, rel=1e-15)


@pytest.mark.parametrize(
    "text",
    ["", "abc", "1,5", "12,34.5", "1.2.3", "--3", "(-3)", "nan", "inf", "$", "1e", "3 million"],
)
def test_rejects_non_numbers(text: str) -> None:
    with pytest.raises(ValueError):
        parse_number(text)


@pytest.mark.parametrize("value", [True, float("nan"), float("inf")])
def test_rejects_bools_and_non_finite(value: float) -> None:
    with pytest.raises(ValueError):
        parse_number(value)


def test_accepts_python_and_numpy_numbers() -> None:
    assert parse_number(3) == 3.0
    assert parse_number(np.int64(7)) == 7.0
    assert parse_number(np.float32(0.5)) == 0.5


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("$1,234.50", "1234.50"),
        ("(3.4)", "-3.4"),
        ("12%", "12"),
        (".5", "0.5"),
        ("+7", "7"),
        ("1.2e3", "1.2e3"),
    ],
)
def test_normalized_text_keeps_the_written_digits(text: str, normal: str) -> None:
    assert normalize_number_text(text) == normal


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12.5, "12.5"),
        (3.0, "3"),
        (-0.0, "0"),
        (1234567.0, "1234567"),
        (0.016398, "0.016398"),
        (1 / 3, "0.333333"),
        (-7.08, "-7.08"),
    ],
)
def test_format_number_is_plain(value: float, text: str) -> None:
    assert format_number(value) == text
