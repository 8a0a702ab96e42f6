"""When a generated answer is finished: end-of-turn tokens and the answer-sentence pattern built
from the prompt config's `answer_format` (parsing the answer is `answers.py`'s job)."""

from __future__ import annotations

import re
from typing import Literal

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from taskvec.data.base import Sample

_WORD = r"[^\W_](?:[\w'-]|\.(?=\w))*"  # "walked", "don't", "U.S", "12.5"
_TEXT_ANSWER = rf"[\"'*]*{_WORD}(?:\s+{_WORD}){{0,3}}[\"'*]*"  # one to four words, maybe quoted


def answer_stop_pattern(
    answer_format: str, answer_type: Literal["number", "text"] = "number"
) -> re.Pattern[str] | None:
    """A regex for a finished answer sentence, built from the text around `{answer}` in `answer_format`.

    number: a number that may carry a sign, currency, '%' and up to two words ("million
    dollars"), then a full stop followed by a space or newline ("The answer is 12.5. "), since
    a bare full stop may still be a decimal point. text: one to four words, then the closing
    punctuation written after `{answer}` ("The answer is walked."), or a newline if none is
    (a full stop after a digit, as in "12.", waits for a space or newline too). None when
    `answer_format` starts with `{answer}`.
    """
    lead, _, tail = answer_format.partition("{answer}")
    if not lead.strip():
        return None
    phrase = r"\s+".join(re.escape(word) for word in lead.split()) + r"\s*:?\s*"
    if answer_type == "text":
        close = (
            re.escape(tail.strip()) or r"\n"
        ) + r"(?:(?<!\d\.)|\s)"  # "12." may go on to "12.5"
        return re.compile(phrase + _TEXT_ANSWER + r"\s*" + close, re.IGNORECASE)
    number = r"[-+\u2212(]?[$€£]?\s?\d[\d,]*(?:\.\d+)?\)?\s?%?"
    return re.compile(phrase + number + r"(?:\s+[^\W\d_]+){0,2}\s*(?:\.\s|\n)", re.IGNORECASE)


def stop_pattern(answer_format: str, samples: list[Sample]) -> re.Pattern[str] | None:
    """The answer-sentence stop for these samples: the text pattern when every gold answer is text."""
    return answer_stop_pattern(
        answer_format, "text" if all(s.answer is None for s in samples) else "number"
    )


def eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """End-of-turn tokens: the tokenizer's eos plus any the model's own generation config lists."""
    found = [tokenizer.eos_token_id, model.generation_config.eos_token_id]
    flat = [i for x in found for i in (x if isinstance(x, list) else [x]) if i is not None]
    return list(dict.fromkeys(flat))
