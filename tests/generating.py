"""Generation as a function over token ids, for tests that compare it with a reference
(`benchmarks/hf_generate.py`'s `generate_padded`)."""

from __future__ import annotations

import re

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from taskvec.evaluation.stopping import eos_ids
from taskvec.model.generation import Generator
from taskvec.prompts.config import Generation


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[list[int]],
    settings: Generation,
    batch_size: int,
    stop: re.Pattern[str] | None = None,
    prefix_cache: bool = True,
) -> list[list[int]]:
    """Generated token ids per prompt, in input order, up to and including eos or the `stop` match.

    Shared prompt prefixes are prefilled once and rows finish independently (see
    `taskvec.model.generation.Generator`); greedy output equals `model.generate` at batch size 1.
    """
    generator = Generator(
        model, settings, eos_ids(model, tokenizer), batch_size, tokenizer, stop, prefix_cache
    )
    outputs: list[list[int]] = [[] for _ in prompt_ids]
    for done in generator.run(prompt_ids):
        outputs[done.idx] = done.tokens
    return outputs
