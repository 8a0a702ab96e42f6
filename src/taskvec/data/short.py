"""The `short` task set: questions with a one-word answer drawn from two labels.

Each kind (`SHORT_KINDS`, registered with `@register_short(name, labels)`) is a task set of its
own (`dataset.name: direction`, ...) and `short` mixes them. Their samples carry the word in
`answer_text` and `answer` None (a text answer, scored by exact match).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from taskvec.data.problems import (
    Generator,
    Problem,
    company_name,
    grouped,
    millions,
    num,
    registrar,
)

SHORT_KINDS: dict[str, Generator] = {}
LABELS: dict[
    str, tuple[str, str]
] = {}  # kind -> its two answer words (one token each for common BPEs)


_register = registrar(SHORT_KINDS)


def register_short(name: str, labels: tuple[str, str]) -> Callable[[Generator], Generator]:
    """Add a one-word-answer generator to `SHORT_KINDS`; its answers are drawn from `labels`."""
    LABELS[name] = labels
    return _register(name)


def _word(kind: str, label: int, question: str, rationale: str) -> Problem:
    return Problem(question, None, rationale, LABELS[kind][label])


def _pair(rng: random.Random, low: float, high: float) -> tuple[float, float]:
    """Two distinct figures (one decimal) at least 5% apart, in random order."""
    while True:
        a, b = millions(rng, low, high), millions(rng, low, high)
        if abs(a - b) >= 0.05 * max(a, b):
            return a, b


def _short_m(value: float) -> str:
    return f"${grouped(value)}M"


@register_short("direction", ("up", "down"))
def direction(rng: random.Random) -> Problem:
    """Did a line item go up or down between two years?"""
    item = rng.choice(
        ("Revenue", "Net income", "Operating expenses", "Free cash flow", "Inventory", "Total debt")
    )
    old, new = _pair(rng, 1, 900)
    label = 0 if new > old else 1
    return _word(
        "direction",
        label,
        f"{item} went from {_short_m(old)} to {_short_m(new)}. Direction:",
        f"{_short_m(new)} is {'more' if label == 0 else 'less'} than {_short_m(old)}.",
    )


@register_short("profit_or_loss", ("profit", "loss"))
def profit_or_loss(rng: random.Random) -> Problem:
    """Do revenues exceed costs?"""
    revenue, costs = (round(x) for x in _pair(rng, 20, 990))
    while revenue == costs:
        costs += 1
    label = 0 if revenue > costs else 1
    return _word(
        "profit_or_loss",
        label,
        f"Revenue {revenue}, costs {costs}. Result:",
        f"Revenue minus costs is {revenue} - {costs} = {revenue - costs}.",
    )


@register_short("which_larger", ("first", "second"))
def which_larger(rng: random.Random) -> Problem:
    """Which of two companies reported the larger figure?"""
    item = rng.choice(("revenue", "net income", "total assets", "cash"))
    first, second = company_name(rng), company_name(rng)
    while second == first:
        second = company_name(rng)
    a, b = _pair(rng, 1, 900)
    label = 0 if a > b else 1
    return _word(
        "which_larger",
        label,
        f"{first} {item} {_short_m(a)}; {second} {item} {_short_m(b)}. Larger:",
        f"{_short_m(max(a, b))} is more than {_short_m(min(a, b))}.",
    )


@register_short("above_one", ("yes", "no"))
def above_one(rng: random.Random) -> Problem:
    """Is a ratio (current assets / current liabilities) above 1?"""
    assets, liabilities = _pair(rng, 5, 900)
    label = 0 if assets > liabilities else 1
    return _word(
        "above_one",
        label,
        f"Current assets {_short_m(assets)}, current liabilities {_short_m(liabilities)}. Current "
        "ratio above 1:",
        f"The current ratio is {num(assets, 1)} / {num(liabilities, 1)} = {num(assets / liabilities)}.",
    )
