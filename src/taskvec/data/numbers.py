"""Parse and format the numbers financial answers are written in.

Shared by the dataset loaders (gold answers) and answer extraction (model output),
so "$1,234.50", "(3.4)" and "12%" mean the same thing everywhere.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import cast

_SHAPE = re.compile(r"(?P<sign1>[+-]?)[$€£¥]?(?P<sign2>[+-]?)(?P<body>[\d.,]+(?:[eE][+-]?\d+)?)%?")
_PLAIN = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_GROUPED = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d*)?")


def normalize_number_text(text: str) -> str:
    """Canonical plain form of a written number: '$1,234.50' -> '1234.50', '(3.4)' -> '-3.4', '12%' -> '12'.

    Accepts one leading currency symbol, a trailing '%', accounting parentheses for
    negatives and comma thousands separators (only in valid groups, so '1,5' is
    rejected rather than read as 15). Raises ValueError for anything else.
    """
    s = "".join(text.split()).replace("\u2212", "-")
    negative = s.startswith("(") and s.endswith(")")
    if negative:
        s = s[1:-1]
    match = _SHAPE.fullmatch(s)
    if match is None:
        raise ValueError(f"not a number: {text!r}")
    signs = match["sign1"] + match["sign2"]
    body = match["body"]
    mantissa = re.split(r"[eE]", body)[0]
    if len(signs) + negative > 1 or ("," in mantissa and not _GROUPED.fullmatch(mantissa)):
        raise ValueError(f"not a number: {text!r}")
    body = body.replace(",", "")
    if not _PLAIN.fullmatch(body):
        raise ValueError(f"not a number: {text!r}")
    body = ("0" + body if body.startswith(".") else body).removesuffix(".")
    return ("-" if negative or signs == "-" else "") + body


def parse_number(value: str | int | float) -> float:
    """A finite float from a number (numpy ones too) or a written number (see `normalize_number_text`).

    Raises ValueError for anything else, including bools, NaN and infinities.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    number = (
        float(value)
        if isinstance(value, numbers.Real)
        else float(normalize_number_text(cast(str, value)))
    )
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number


def format_number(value: float, max_decimals: int = 6) -> str:
    """Plain text for a number: at most `max_decimals` decimals, no trailing zeros, no separators."""
    text = f"{value:.{max_decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
