"""Rationales of the word tasks: true to the facts, deterministic, and followed by the answer
sentence in cot prompts."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskvec.data.base import Sample
from taskvec.data.rationales import past_tense_rationale
from taskvec.data.tasks import WORD_TASKS, word_split
from taskvec.prompts.config import load_prompt_config
from taskvec.prompts.render import answer_text

COT_5SHOT = Path(__file__).parents[2] / "configs" / "smollm2-135m" / "words_chat_cot_5shot.yaml"


@pytest.mark.parametrize(
    ("verb", "past", "expected"),
    [
        ("walk", "walked", "walk is a regular verb, so add -ed: walked."),
        ("live", "lived", "live is a regular verb ending in -e, so add -d: lived."),
        (
            "carry",
            "carried",
            "carry is a regular verb ending in a consonant and -y, so change -y to -i and add -ed: carried.",
        ),
        ("stop", "stopped", "stop is a regular verb whose final p doubles before -ed: stopped."),
        # a vowel before the y: no change
        (
            "play",
            "played",
            "play is a regular verb, so add -ed: played.",
        ),
        ("go", "went", "go is an irregular verb; its past tense is went."),
        ("cut", "cut", "cut is an irregular verb; its past tense is cut."),
        # -d without a final -e
        (
            "hear",
            "heard",
            "hear is an irregular verb; its past tense is heard.",
        ),
        ("pay", "paid", "pay is an irregular verb; its past tense is paid."),  # not *payed
    ],
)
def test_past_tense_rationale(verb: str, past: str, expected: str) -> None:
    assert past_tense_rationale(verb, past) == expected


IRREGULAR = {
    "go",
    "see",
    "eat",
    "read",
    "cut",
    "hear",
    "say",
    "pay",
    "lay",
    "lie",
    "make",
    "have",
    "understand",
}
REGULAR = {
    "walk",
    "play",
    "close",
    "agree",
    "stop",
    "plan",
    "carry",
    "study",
    "travel",
    "fix",
    "enjoy",
    "owe",
}


def test_every_past_tense_pair_is_classified_as_a_grammar_says() -> None:
    """Against a hand-made list of regular and irregular verbs from the table; each rationale
    ends with the answer."""
    pairs = dict(WORD_TASKS["past_tense"].pairs())
    assert IRREGULAR | REGULAR <= set(pairs)
    for verb, past in pairs.items():
        text = past_tense_rationale(verb, past)
        assert text.startswith(f"{verb} is a") and text.endswith(f" {past}.")
        if verb in IRREGULAR:
            assert "irregular" in text
        if verb in REGULAR:
            assert "a regular verb" in text


def test_word_split_carries_rationales_deterministically() -> None:
    first, again = word_split("past_tense", "train", 500), word_split("past_tense", "train", 500)
    assert first == again and all(
        s.rationale == past_tense_rationale(s.question, s.answer_text) for s in first
    )
    assert all(not s.rationale for s in word_split("first_letter", "train", 500)), (
        "tasks without a rule have no rationale"
    )


def test_a_cot_demonstration_ends_with_the_answer_sentence() -> None:
    cfg = load_prompt_config(COT_5SHOT)
    sample = Sample("train_0", "walk", None, "walked", past_tense_rationale("walk", "walked"))
    assert (
        answer_text(cfg, sample)
        == "walk is a regular verb, so add -ed: walked. The answer is walked."
    )
    assert (
        answer_text(cfg.model_copy(update={"prompt_type": "vanilla"}), sample)
        == "The answer is walked."
    )
