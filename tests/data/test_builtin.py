"""The built-in financial dataset: deterministic, balanced over kinds, and arithmetically right."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest

from taskvec.data import DatasetConfig, load_split, parse_number
from taskvec.data.builtin import generate_labeled, generate_split
from taskvec.data.easy import EASY_KINDS
from taskvec.data.finance import KINDS
from taskvec.data.numbers import format_number
from taskvec.errors import TaskvecError

_FIGURE = re.compile(r"(?<![\w.])\$?\d+(?:,\d{3})*(?:\.\d+)?")
_EQUATION = re.compile(r"(-?(?:\d|\()[\d.()+\-*/^ ]*?)\s=\s(-?\d+(?:\.\d+)?)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def figures(question: str) -> list[float]:
    """The numbers in a question in order ('$4,512.3 million' -> 4512.3; 'Q1' is not a figure)."""
    return [parse_number(match) for match in _FIGURE.findall(question)]


def test_same_seed_same_samples_and_other_seed_differs() -> None:
    assert generate_split("train", 60, seed=3) == generate_split("train", 60, seed=3)
    other = {s.question for s in generate_split("train", 60, seed=4)}
    assert not other & {s.question for s in generate_split("train", 60, seed=3)}


def test_larger_split_extends_smaller_one() -> None:
    assert generate_split("test", 70, seed=1)[:25] == generate_split("test", 25, seed=1)


def test_ids_are_stable_and_unique() -> None:
    samples = generate_split("test", 40)
    assert [s.id for s in samples] == [f"test_{i}" for i in range(40)]


def test_every_kind_appears_in_200_samples() -> None:
    assert len(KINDS) >= 10
    kinds = [kind for kind, _ in generate_labeled("train", 200)]
    assert set(kinds) == set(KINDS)
    assert min(kinds.count(k) for k in KINDS) >= 200 // len(KINDS)


def test_train_and_test_share_no_question() -> None:
    train = [s.question for s in generate_split("train", 600)]
    test = [s.question for s in generate_split("test", 600)]
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert not set(train) & set(test)


def test_rationale_arithmetic_holds_and_ends_at_the_answer() -> None:
    for kind, sample in generate_labeled("train", 400, seed=7):
        equations = _EQUATION.findall(sample.rationale)
        assert equations, (kind, sample.rationale)
        for expression, result in equations:
            # digits and operators only
            value = eval(expression.replace("^", "**"), {"__builtins__": {}})
            assert math.isclose(value, float(result), rel_tol=1e-4, abs_tol=0.0051), (
                kind,
                expression,
                result,
            )
        assert float(_NUMBER.findall(sample.rationale)[-1]) == sample.answer, (
            kind,
            sample.rationale,
        )
        assert sample.answer_text == format_number(sample.answer)
        assert "The answer is" not in sample.rationale and sample.rationale.endswith(".")
        assert 10 <= len(sample.rationale.split()) <= 60


def _cagr(f: list[float]) -> float:
    start, _, end, _, years = f
    return ((end / start) ** (1 / years) - 1) * 100


def _compound(question: str) -> float:
    principal, rate, years = figures(question)
    periods = next(
        n
        for word, n in {"annually": 1, "semiannually": 2, "quarterly": 4, "monthly": 12}.items()
        if f"compounded {word}" in question
    )
    return principal * (1 + rate / 100 / periods) ** (periods * years)


RECOMPUTE: dict[str, Callable[[str], float]] = {
    "percent_change": lambda q: (lambda old, _y, new, *_: (new - old) / old * 100)(*figures(q)),
    "gross_margin": lambda q: (lambda _y, rev, cogs: (rev - cogs) / rev * 100)(*figures(q)),
    "operating_margin": lambda q: (lambda _y, rev, cogs, opex: (rev - cogs - opex) / rev * 100)(
        *figures(q)
    ),
    "debt_to_equity": lambda q: (lambda _y, short, long, eq: (short + long) / eq)(*figures(q)),
    "cagr": lambda q: _cagr(figures(q)),
    "simple_interest": lambda q: (lambda p, r, t: p * r / 100 * t)(*figures(q)),
    "compound_interest": _compound,
    "earnings_per_share": lambda q: (lambda _y, ni, pref, sh: (ni - pref) / sh)(*figures(q)),
    "break_even_units": lambda q: (lambda p, v, fixed: math.ceil(fixed / (p - v)))(*figures(q)),
    "average": lambda q: sum(figures(q)[:4]) / 4,
    "return_on_equity": lambda q: (lambda b, _y, e, _y2, ni: ni / ((b + e) / 2) * 100)(*figures(q)),
}


@pytest.mark.parametrize("kind", sorted(RECOMPUTE))
def test_answer_recomputed_from_the_question_figures(kind: str) -> None:
    samples = [s for k, s in generate_labeled("test", 18 * 30, seed=11) if k == kind]
    assert len(samples) >= 25
    for sample in samples:
        expected = RECOMPUTE[kind](sample.question)
        assert sample.answer == pytest.approx(expected, abs=0.0051), sample.question


def test_load_split_uses_config_sizes_and_seed() -> None:
    cfg = DatasetConfig(n_train=12, n_test=7, seed=5)
    assert len(load_split(cfg, "train")) == 12
    assert load_split(cfg, "test") == generate_split("test", 7, seed=5)
    assert load_split(DatasetConfig(name="finance", n_test=3), "test") == generate_split("test", 3)


def test_unknown_builtin_split_lists_the_splits() -> None:
    with pytest.raises(TaskvecError, match="no split 'validation'.*train, test"):
        load_split(DatasetConfig(), "validation")


def test_unknown_builtin_name_is_rejected() -> None:
    with pytest.raises(TaskvecError, match="dataset.name 'gsm8k'.*finance"):
        load_split(DatasetConfig(name="gsm8k"), "train")


def _easy_answer(kind: str, question: str) -> float:
    amounts = [int(x) for x in re.findall(r"\$(\d+) million", question)]
    if kind == "easy_lookup":
        years = re.findall(r"\b(20\d\d)\b", question)  # the two years, then the one asked
        return amounts[0] if years[2] == years[0] else amounts[1]
    return {"easy_larger": max, "easy_total": sum}.get(kind, lambda a: a[0] - a[1])(amounts)


def test_easy_kinds_ask_one_step_on_small_whole_numbers() -> None:
    labeled = generate_labeled("test", 120, seed=2, name="finance_easy")
    assert {kind for kind, _ in labeled} == set(EASY_KINDS)
    for kind, sample in labeled:
        assert sample.answer == _easy_answer(kind, sample.question), sample.question
        assert sample.answer_text == str(int(sample.answer)) and sample.rationale
        assert all(int(x) < 100 for x in re.findall(r"\$(\d+) million", sample.question))


@pytest.mark.parametrize("kind", ["easy_lookup", "percent_change"])
def test_each_kind_is_a_task_set_of_its_own(kind: str) -> None:
    """How the kinds were measured one by one (`dataset.name: easy_lookup`)."""
    assert {k for k, _ in generate_labeled("train", 12, name=kind)} == {kind}
    assert len(load_split(DatasetConfig(name=kind, n_train=5), "train")) == 5
