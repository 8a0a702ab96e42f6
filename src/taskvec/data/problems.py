"""What a builtin question generator returns, and the figures its questions are written with.

Every generator is a `(rng) -> Problem` function; its questions carry their own figures (company
names, fiscal years, amounts in millions) and its rationale shows the arithmetic in 1-3 sentences
and stops before "The answer is", which the prompt renderer appends.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from taskvec.data.numbers import format_number


@dataclass(frozen=True)
class Problem:
    """One generated question; `answer` is already rounded to its reported precision.

    Word-answer problems set `answer_text` (the word) and `answer` None.
    """

    question: str
    answer: float | None
    rationale: str
    answer_text: str | None = None


Generator = Callable[[random.Random], Problem]


def registrar(kinds: dict[str, Generator]) -> Callable[[str], Callable[[Generator], Generator]]:
    """A decorator factory adding generators to `kinds` by name (registration order is kind order)."""

    def register(name: str) -> Callable[[Generator], Generator]:
        def add(generator: Generator) -> Generator:
            kinds[name] = generator
            return generator

        return add

    return register


_PREFIXES = (
    "Apex", "Bluewater", "Cedar Ridge", "Delta Point", "Evergreen", "Falcon", "Granite", "Harbor",
    "Ironwood", "Juniper", "Keystone", "Lakeside", "Meridian", "Northwind", "Orion", "Pinnacle",
    "Quantum", "Redwood", "Silverline", "Summit", "Titan", "Vantage", "Willow", "Zenith",
)  # fmt: skip
_SUFFIXES = (
    "Corp", "Industries", "Holdings", "Group", "Inc.", "Technologies", "Logistics", "Foods",
    "Energy", "Retail", "Pharmaceuticals", "Systems", "Manufacturing", "Financial",
)  # fmt: skip


def company_name(rng: random.Random) -> str:
    """A made-up company name."""
    return f"{rng.choice(_PREFIXES)} {rng.choice(_SUFFIXES)}"


def possessive(name: str) -> str:
    """`name` with an apostrophe-s (or a bare apostrophe after an s)."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def fiscal_year(rng: random.Random, span: int = 1) -> int:
    """A fiscal year such that `year + span` is still in the past."""
    return rng.randint(2008, 2023 - span)


def millions(rng: random.Random, low: float, high: float) -> float:
    """A figure in millions with one decimal, like a financial statement line."""
    return round(rng.uniform(low, high), 1)


def num(value: float, decimals: int = 2) -> str:
    """A plain number as written in rationales and gold answers: '4512.3', '-12.5', '7'."""
    return format_number(round(value, decimals), decimals)


def grouped(value: float, decimals: int = 1) -> str:
    """A number with thousands separators as written in questions: '4,512.3', '250,000'."""
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def usd_m(value: float) -> str:
    """An amount in millions of dollars as written in questions: '$4,512.3 million'."""
    return f"${grouped(value)} million"
