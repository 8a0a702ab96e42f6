"""Read the numeric answer out of a model's generation and score it against the gold answer.

Pure functions, no model code: the evaluation pipeline and the analysis both call them,
and `tests/test_answers.py` pins every rule with a table of real-looking outputs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from taskvec.data.numbers import format_number, normalize_number_text, parse_number

SCALES = {
    "thousand": 1e3, "k": 1e3,
    "million": 1e6, "m": 1e6, "mn": 1e6,
    "billion": 1e9, "bn": 1e9,
    "trillion": 1e12,
}  # fmt: skip
REL_TOLERANCE = 1e-4
_FLOAT_SLACK = 1e-9  # relative; absorbs binary rounding at the boundary (12.355 vs 12.35)

# One written number in free text. Not glued to a word or another number on the left,
# so "FY2019" and the "-2012" of "2011-2012" are not read as numbers (the latter reads 2012).
_NUMBER = re.compile(
    r"""
    (?<![\w.,])
    (?P<open>\(\s*)?
    (?P<sign>[-+\u2212])?
    (?P<currency>[$€£]\s?)?
    (?P<sign2>[-+\u2212])?
    (?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)
    (?!\d|,\d)
    (?P<percent>\s?%)?
    (?:\s?(?P<word>thousand|million|billion|trillion)s?\b|(?P<suffix>k|m|mn|bn)(?![^\W\d_]))?
    (?P<close>\s*\))?
    """,
    re.VERBOSE | re.IGNORECASE,
)
_ANSWER_IS = re.compile(
    r"\banswer(?:\s+to\s+(?:this|the)\s+(?:question|problem))?\s+is\b\s*:?", re.IGNORECASE
)
_ANSWER_COLON = re.compile(r"\banswer\s*:", re.IGNORECASE)
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")


@dataclass(frozen=True)
class ParsedAnswer:
    """A number read from a generation.

    `value` is the number as written, signed (a '-', U+2212 or accounting parentheses
    make it negative), with neither '%' nor a scale word applied: `scale` is the
    multiplier of a trailing scale word ("1.5 million" -> value 1.5, scale 1e6) and
    `percent` says the text carried a '%'.
    `how` is `answer_phrase` (after "the answer is" or "Answer:") or `last_number`.
    """

    value: float
    text: str
    how: Literal["answer_phrase", "last_number"]
    scale: float = 1.0
    percent: bool = False


def _read(match: re.Match[str]) -> tuple[float, float, bool] | None:
    """(value, scale, percent) of one `_NUMBER` match, or None if it is not a valid number."""
    signs = [s for s in (match["sign"], match["sign2"]) if s]
    if len(signs) > 1:
        return None
    negative = bool(signs) and signs[0] != "+"
    if match["open"] and match["close"] and not signs:
        negative = True  # accounting negative: "(3.4)"
    try:
        value = parse_number(("-" if negative else "") + match["digits"])
    except ValueError:
        return None
    scale_word = (match["word"] or match["suffix"] or "").lower()
    return value, SCALES.get(scale_word, 1.0), bool(match["percent"])


def _numbers(
    text: str, how: Literal["answer_phrase", "last_number"]
) -> list[tuple[int, int, ParsedAnswer]]:
    """Every number in `text`, in order, with its span."""
    found = []
    for match in _NUMBER.finditer(text):
        read = _read(match)
        if read is not None:
            span = match.group(0).strip()
            if match["open"] and not match["close"]:
                span = span[1:].strip()
            if match["close"] and not match["open"]:
                span = span[:-1].strip()
            found.append(
                (match.start(), match.end(), ParsedAnswer(read[0], span, how, read[1], read[2]))
            )
    return found


def _answer_in(region: str) -> ParsedAnswer | None:
    """The answer stated at the start of `region` (the text after an answer phrase).

    The first number, unless the sentence it opens is a worked expression: then the first
    number after its last '=' or '≈' ("2020 - 2019 = 10." -> 10).
    """
    found = _numbers(region, "answer_phrase")
    if not found:
        return None
    first_end = found[0][1]
    stop = _SENTENCE_END.search(region, first_end)
    clause_end = stop.start() if stop else len(region)
    equals = max(
        region.rfind("=", first_end, clause_end), region.rfind("\u2248", first_end, clause_end)
    )
    after = (
        [parsed for start, _, parsed in found if equals < start < clause_end] if equals >= 0 else []
    )
    return after[0] if after else found[0][2]


def _after_phrase(text: str, phrase: re.Pattern[str]) -> ParsedAnswer | None:
    """The answer after the last occurrence of `phrase` that is followed by a number."""
    starts = [m.end() for m in phrase.finditer(text)]
    for i in reversed(range(len(starts))):
        end = len(text) if i + 1 == len(starts) else starts[i + 1]
        answer = _answer_in(text[starts[i] : end])
        if answer is not None:
            return answer
    return None


def extract_answer(generation: str) -> ParsedAnswer | None:
    """The model's numeric answer, or None if the text holds no number.

    Rules, first that applies: the number after the last "the answer is" (any case,
    also "the answer to this question is") that is followed by a number; the same after
    the last "Answer:"; the last number anywhere in the text. After an answer phrase the
    first number is taken, unless its sentence is a worked expression: then the first
    number after the sentence's last '=' or '≈' ("The answer is 300 / 1200 = 25%." -> 25).
    Numbers may carry a sign (also U+2212), a
    currency symbol ($, €, £), comma thousands separators, a '%', accounting
    parentheses "(3.4)" = -3.4, and a scale: "thousand", "million", "billion",
    "trillion" after a space, or "k", "m", "mn", "bn" attached to the digits
    ("$1.5bn"). A sentence's closing period is not a decimal point ("is 12." -> 12).
    """
    numbers = _numbers(generation, "last_number")
    fallback = numbers[-1][2] if numbers else None
    return (
        _after_phrase(generation, _ANSWER_IS)
        or _after_phrase(generation, _ANSWER_COLON)
        or fallback
    )


def gold_decimals(gold: float, gold_text: str | None) -> int:
    """How many decimals the gold answer is written with ("12.35" -> 2, "1.2e3" -> -2, "46167" -> 0).

    Without a usable `gold_text`, the plain form of `gold` (at most 12 decimals) is used.
    """
    try:
        plain = (
            normalize_number_text(gold_text) if gold_text is not None else format_number(gold, 12)
        )
    except ValueError:
        plain = format_number(gold, 12)
    mantissa, _, exponent = plain.lower().partition("e")
    fraction = mantissa.partition(".")[2]
    return len(fraction) - (int(exponent) if exponent else 0)


def is_correct(pred: float, gold: float, gold_text: str | None = None) -> bool:
    """Whether `pred` equals `gold` within the precision the gold answer is written with.

    Accepts |pred - gold| <= max(half a unit of the gold's last written decimal,
    1e-4 * |gold|) (plus 1e-9 relative for binary rounding). So gold "12.35" accepts
    12.349 and 12.354 but not 12.3 or 12.36; gold "46167" accepts 46166.67. A
    prediction less precise than the gold fails unless within 1e-4 relative (gold
    "6028.98" accepts 6029; gold "6.72" rejects 6.7). Gold written with trailing zeros
    dropped ("1.5" for 1.50) is taken at its written precision.
    """
    if not math.isfinite(pred):
        return False
    half_unit = 0.5 * 10.0 ** -gold_decimals(gold, gold_text)
    tolerance = max(half_unit, REL_TOLERANCE * abs(gold))
    return abs(pred - gold) <= tolerance + _FLOAT_SLACK * max(abs(gold), 1.0)


def candidates(parsed: ParsedAnswer, gold_text: str | None = None) -> list[float]:
    """The values a parsed answer may stand for, in the order `score` tries them.

    The number as written; times its scale word ("1.5 million" matches gold 1.5, a
    figure already in millions, and gold 1500000); divided by 100 when only the
    prediction carries '%' ("12.5%" matches gold 0.125); times 100 when only the gold
    text carries '%' (0.125 matches gold "12.5%").
    """
    values = [parsed.value]
    if parsed.scale != 1.0:
        values.append(parsed.value * parsed.scale)
    gold_percent = gold_text is not None and "%" in gold_text
    if parsed.percent and not gold_percent:
        values.append(parsed.value / 100)
    if gold_percent and not parsed.percent:
        values.append(parsed.value * 100)
    return values


def score(parsed: ParsedAnswer | None, gold: float, gold_text: str | None = None) -> bool:
    """Whether any of the parsed answer's `candidates` `is_correct`; no answer is wrong."""
    return parsed is not None and any(
        is_correct(v, gold, gold_text) for v in candidates(parsed, gold_text)
    )


# --- text answers -----------------------------------------------------------------------

_EDGE_PUNCT = ".,;:!?\"'`*()[]{}<>"


def normalise_text(text: str, case_sensitive: bool = True) -> str:
    """A text answer's comparable form: whitespace collapsed, edge quotes/brackets/punctuation
    stripped, case kept unless not `case_sensitive`."""
    words = " ".join(text.split()).strip(_EDGE_PUNCT + " ")
    return words if case_sensitive else words.casefold()


def extract_text_answer(generation: str, n_words: int) -> str | None:
    """The first `n_words` words of the answer in a generation, or None if it has none.

    The answer starts after the last "the answer is" or "Answer:" (any case) when the
    text has one, else at the start; only its first non-empty line is read. Each word
    loses the edge punctuation `normalise_text` strips ("Paris." -> "Paris").
    """
    starts = [m.end() for m in _ANSWER_IS.finditer(generation)] or [
        m.end() for m in _ANSWER_COLON.finditer(generation)
    ]
    region = generation[starts[-1] :] if starts else generation
    line = next((ln for ln in region.splitlines() if normalise_text(ln)), "")
    words = [w for w in (normalise_text(w) for w in line.split()) if w][: max(1, n_words)]
    return " ".join(words) if words else None


def score_text(
    generation: str, gold_text: str, case_sensitive: bool = True
) -> tuple[str | None, bool]:
    """(the answer read from `generation`, whether it equals `gold_text` after `normalise_text`)."""
    gold = normalise_text(gold_text, case_sensitive)
    parsed = extract_text_answer(generation, len(gold.split()))
    return parsed, parsed is not None and normalise_text(parsed, case_sensitive) == gold
