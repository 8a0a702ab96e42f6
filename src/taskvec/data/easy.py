"""Easy financial questions: one step of arithmetic on small whole numbers.

The `finance` kinds (`finance.py`) need several steps on five- and six-digit figures with two
decimals; a 135M model answers none of them. These ask the same kind of question (a figure read off
the question, the larger of two, a total, a profit) with figures of one or two digits and a
whole-number answer, so a small model gets some right and some wrong, which is what a correlation of
vectors with correctness needs. `dataset.name: finance_easy` mixes them; each kind is also a task
set of its own (`dataset.name: easy_lookup`).
"""

from __future__ import annotations

import random

from taskvec.data.problems import (
    Generator,
    Problem,
    company_name,
    fiscal_year,
    possessive,
    registrar,
)

EASY_KINDS: dict[str, Generator] = {}
_register = registrar(EASY_KINDS)


def _whole(value: int) -> float:
    return float(value)


def _two(rng: random.Random, low: int, high: int) -> tuple[int, int]:
    """Two different whole numbers in [low, high]."""
    first, second = rng.sample(range(low, high + 1), 2)
    return first, second


@_register("easy_lookup")
def lookup(rng: random.Random) -> Problem:
    """Read one of two years' figures off the question: no arithmetic."""
    name, year = company_name(rng), fiscal_year(rng)
    item = rng.choice(("revenue", "net income", "cash", "sales"))
    old, new = _two(rng, 10, 99)
    asked = rng.choice((year, year + 1))
    answer = old if asked == year else new
    return Problem(
        f"{name} had {item} of ${old} million in {year} and ${new} million in {year + 1}. "
        f"What was its {item} in {asked}, in millions of dollars?",
        _whole(answer),
        f"The question gives the {asked} figure: {answer} million.",
    )


@_register("easy_larger")
def larger(rng: random.Random) -> Problem:
    """The larger of two segments' revenue: a comparison, no arithmetic."""
    name, year = company_name(rng), fiscal_year(rng, 0)
    first, second = _two(rng, 10, 99)
    return Problem(
        f"In {year}, {possessive(name)} retail segment had revenue of ${first} million and its "
        f"online segment ${second} million. What was the larger segment revenue, in millions of "
        "dollars?",
        _whole(max(first, second)),
        f"{max(first, second)} is more than {min(first, second)}, so the larger is "
        f"{max(first, second)} million.",
    )


@_register("easy_total")
def total(rng: random.Random) -> Problem:
    """Half-year revenue from two single-digit quarters."""
    name, year = company_name(rng), fiscal_year(rng, 0)
    first, second = rng.randint(1, 5), rng.randint(1, 4)
    return Problem(
        f"{name} had revenue of ${first} million in Q1 {year} and ${second} million in Q2 {year}. "
        "What was its revenue for the first half of the year, in millions of dollars?",
        _whole(first + second),
        f"The half year is Q1 plus Q2: {first} + {second} = {first + second} million.",
    )


@_register("easy_profit")
def profit(rng: random.Random) -> Problem:
    """Revenue minus costs with single digits: one subtraction."""
    name, year = company_name(rng), fiscal_year(rng, 0)
    costs = rng.randint(1, 7)
    revenue = costs + rng.randint(1, 9 - costs)
    return Problem(
        f"In {year}, {name} had revenue of ${revenue} million and costs of ${costs} million. "
        "What was its profit, in millions of dollars?",
        _whole(revenue - costs),
        f"Profit is revenue minus costs: {revenue} - {costs} = {revenue - costs} million.",
    )
