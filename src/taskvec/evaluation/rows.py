"""One line of predictions.jsonl: a finished sample's generation, its parsed answer and whether
it is correct."""

from __future__ import annotations

import re
from typing import Any

from transformers import PreTrainedTokenizerBase

from taskvec.data.base import Sample
from taskvec.evaluation.answers import extract_answer, score, score_text
from taskvec.evaluation.prepare import EvalPrepared
from taskvec.model.generation import Finished
from taskvec.prompts.render import RenderedPrompt


def _prediction(
    idx: int,
    sample: Sample,
    prompt: RenderedPrompt,
    n_prompt: int,
    tokenizer: PreTrainedTokenizerBase,
    new: list[int],
    case_sensitive: bool = True,
) -> dict[str, Any]:
    """One line of predictions.jsonl: the generation, its parsed answer and whether it is correct.

    Numeric gold answers are parsed and scored by `answers.score`; text answers (`answer`
    None) by exact match after `answers.normalise_text` (`parse_method` "text").
    """
    generation = str(tokenizer.decode(new, skip_special_tokens=True))
    parsed_value: float | str | None
    if sample.answer is None:
        text, correct = score_text(generation, sample.answer_text, case_sensitive)
        parsed_value, parsed_text, how = text, text, "text" if text is not None else None
    else:
        parsed = extract_answer(generation)
        parsed_value, parsed_text, how = (
            (parsed.value, parsed.text, parsed.how) if parsed else (None, None, None)
        )
        correct = score(parsed, sample.answer, sample.answer_text)
    return {
        "sample_idx": idx,
        "sample_id": sample.id,
        "prompt": prompt.text,
        "generation": generation,
        "parsed_answer": parsed_value,
        "parsed_text": parsed_text,
        "parse_method": how,
        "gold": sample.answer if sample.answer is not None else sample.answer_text,
        "gold_text": sample.answer_text,
        "correct": correct,
        "n_prompt_tokens": n_prompt,
        "n_generated_tokens": len(new),
    }


def score_prediction(
    idx: int, prep: EvalPrepared, done: Finished, stop: re.Pattern[str] | None
) -> dict[str, Any]:
    """The prediction line of a finished sample; output cut off by max_new_tokens before its answer
    sentence is `truncated` and counts as wrong (the fallback's reading is kept for inspection)."""
    row = _prediction(
        idx,
        prep.samples[idx],
        prep.prompts[idx],
        len(prep.ids[idx]),
        prep.tokenizer,
        done.tokens,
        prep.prompt_config.dataset.case_sensitive,
    )
    truncated = stop is not None and done.reason == "length"
    row.update(
        finish_reason=done.reason, truncated=truncated, correct_if_not_truncated=row["correct"]
    )
    if truncated:
        row["correct"] = False
    if prep.kinds:
        row["kind"] = prep.kinds.get(row["sample_id"])
    return row
