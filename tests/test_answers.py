"""Answer extraction and scoring: a table of real-looking generations and gold answers."""

from __future__ import annotations

import pytest

from taskvec.evaluation.answers import (
    ParsedAnswer,
    candidates,
    extract_answer,
    gold_decimals,
    is_correct,
    score,
)

# generation, expected value (None: no answer), expected how, expected text
EXTRACT = [
    ("The answer is 12.5.", 12.5, "answer_phrase", "12.5"),
    ("The answer is -3.", -3.0, "answer_phrase", "-3"),
    ("the answer is $1,234.50.", 1234.5, "answer_phrase", "$1,234.50"),
    ("THE ANSWER IS 7", 7.0, "answer_phrase", "7"),
    ("The final answer is: 42", 42.0, "answer_phrase", "42"),
    ("The answer is (3.4).", -3.4, "answer_phrase", "(3.4)"),
    ("The answer is ($1,000,000.25)", -1000000.25, "answer_phrase", "($1,000,000.25)"),
    ("The answer is \u22122.5.", -2.5, "answer_phrase", "\u22122.5"),
    ("The answer is -$1,234.", -1234.0, "answer_phrase", "-$1,234"),
    ("The answer is €3.20 per share.", 3.2, "answer_phrase", "€3.20"),
    ("The answer is £ 15.", 15.0, "answer_phrase", "£ 15"),
    ("The answer is 12%.", 12.0, "answer_phrase", "12%"),
    ("The answer is -3.85 %.", -3.85, "answer_phrase", "-3.85 %"),
    ("The answer is 1.5 million.", 1.5, "answer_phrase", "1.5 million"),
    ("The answer is $2.3bn.", 2.3, "answer_phrase", "$2.3bn"),
    ("The answer is 40k units.", 40.0, "answer_phrase", "40k"),
    ("The answer is 12 months.", 12.0, "answer_phrase", "12"),
    ("The answer is 25. In 2019 revenue rose to 1,500.", 25.0, "answer_phrase", "25"),
    (
        "In 2011 and 2012 net income grew 300 / 1,200 * 100 = 25%. The answer is 25.",
        25.0,
        "answer_phrase",
        "25",
    ),
    ("The answer is 5. Wait, no: the answer is 6.", 6.0, "answer_phrase", "6"),
    (
        "The answer is 18.45%.\n\nQuestion: In 2019 what was ...? The answer is",
        18.45,
        "answer_phrase",
        "18.45%",
    ),
    ("Answer: 42\nlater 7", 42.0, "answer_phrase", "42"),
    ("The answer is 2020 - 2019 = 10.", 10.0, "answer_phrase", "10"),
    ("The answer is 13980.7 / 75790.9 * 100 = 18.45%.", 18.45, "answer_phrase", "18.45%"),
    (
        "The answer is 1,385,000 / 30 = 46,166.67, rounded up to 46167 units.",
        46166.67,
        "answer_phrase",
        "46,166.67",
    ),
    ("The answer is 12.5. Revenue = 7", 12.5, "answer_phrase", "12.5"),
    ("The answer is:\n\n0.76 \u2248 0.8", 0.8, "answer_phrase", "0.8"),
    ("The answer to this question is 1. In 2019", 1.0, "answer_phrase", "1"),
    (
        "Revenue in 2019 was $5,829 million, so the margin is 16.47%.",
        16.47,
        "last_number",
        "16.47%",
    ),
    ("Profit was 120 in 2011-2012", 2012.0, "last_number", "2012"),
    ("the growth for FY2019", None, None, None),
    ("I cannot tell from the data.", None, None, None),
    ("", None, None, None),
    ("the list 1,2345", None, None, None),
    ("The answer is 6,028.98.", 6028.98, "answer_phrase", "6,028.98"),
    ("The answer is .5", 0.5, "answer_phrase", ".5"),
    ("The answer is +7.", 7.0, "answer_phrase", "+7"),
    ("The balance is 3000 * (1 + 0.07/12)^120", 120.0, "last_number", "120"),
    ("100kg", 100.0, "last_number", "100"),
]


@pytest.mark.parametrize(
    ("generation", "value", "how", "text"), EXTRACT, ids=[repr(c[0])[:40] for c in EXTRACT]
)
def test_extract_answer(
    generation: str, value: float | None, how: str | None, text: str | None
) -> None:
    parsed = extract_answer(generation)
    if value is None:
        assert parsed is None
        return
    assert parsed is not None
    assert (parsed.value, parsed.how, parsed.text) == (pytest.approx(value), how, text)


def test_scale_and_percent_are_recorded() -> None:
    assert extract_answer("The answer is 1.5 million.") == ParsedAnswer(
        1.5, "1.5 million", "answer_phrase", 1e6, False
    )
    assert extract_answer("about 3 billion dollars").scale == 1e9  # type: ignore[union-attr]
    assert extract_answer("The answer is 12.5%").percent  # type: ignore[union-attr]


# generation, gold, gold_text, correct
SCORE = [
    ("The answer is 12.35.", 12.35, "12.35", True),
    ("The answer is 12.349.", 12.35, "12.35", True),
    ("The answer is 12.354.", 12.35, "12.35", True),
    ("The answer is 12.3.", 12.35, "12.35", False),
    ("The answer is 12.36.", 12.35, "12.35", False),
    ("The answer is 46166.67.", 46167, "46167", True),
    # 1e-4 relative (4.6) is wider than the half unit
    (
        "The answer is 46168.",
        46167,
        "46167",
        True,
    ),
    ("The answer is 46172.", 46167, "46167", False),
    ("The answer is 6029.", 6028.98, "6028.98", True),  # within 1e-4 relative
    ("The answer is 6.7.", 6.72, "6.72", False),  # less precise than the gold and beyond 1e-4
    ("The answer is 1.5 million.", 1500000, "1500000", True),
    ("The answer is 1.5 million.", 1.5, "1.5", True),  # gold already in millions
    ("The answer is 1.6 million.", 1500000, "1500000", False),
    ("The answer is 12.5%.", 0.125, "0.125", True),
    ("The answer is 12.5%.", 12.5, "12.5", True),
    ("The answer is 0.125.", 12.5, "12.5%", True),
    ("The answer is 0.125.", 12.5, "12.5", False),
    ("The answer is (3.4).", -3.4, "(3.4)", True),
    ("The answer is 3.4.", -3.4, "-3.4", False),
    ("The answer is $1,234.50.", 1234.5, "$1,234.50", True),
    ("The answer is 2,000.", 2000, "2,000", True),
    ("In 2019 the margin was 16.47%.", 16.47, "16.47", True),
    ("Revenue was 120 in 2019.", 16.47, "16.47", False),
    ("I do not know.", 16.47, "16.47", False),
    ("The answer is 0.", 0.0, "0", True),
    ("The answer is 1250.", 1200, "1.2e3", True),  # written to hundreds
]


@pytest.mark.parametrize(
    ("generation", "gold", "gold_text", "correct"),
    SCORE,
    ids=[f"{c[0][:30]}|{c[2]}" for c in SCORE],
)
def test_score(generation: str, gold: float, gold_text: str, correct: bool) -> None:
    assert score(extract_answer(generation), gold, gold_text) is correct


@pytest.mark.parametrize(
    ("gold", "gold_text", "decimals"),
    [
        (12.35, "12.35", 2),
        (46167, "46167", 0),
        (1234.5, "$1,234.50", 2),
        (12.0, "12%", 0),
        (1200, "1.2e3", -2),
        (0.125, None, 3),
        (0.30000000000000004, None, 1),
        (3.0, "three", 0),
    ],
)
def test_gold_decimals(gold: float, gold_text: str | None, decimals: int) -> None:
    assert gold_decimals(gold, gold_text) == decimals


def test_is_correct_edges() -> None:
    # the half-unit boundary is inclusive despite binary rounding
    assert is_correct(12.355, 12.35, "12.35")
    assert not is_correct(float("nan"), 1.0, "1")
    assert is_correct(1.00005, 1.0, None)  # without text: the gold's shortest form, "1"
    assert not is_correct(100.02, 100.0, "100.00")


def test_candidates_order() -> None:
    parsed = ParsedAnswer(12.5, "12.5 million%", "answer_phrase", 1e6, True)
    assert candidates(parsed) == [12.5, 12.5e6, 0.125]
    assert candidates(ParsedAnswer(0.5, "0.5", "last_number"), "50%") == [0.5, 50.0]
