"""The previous generation path, the baseline the benchmarks (and the tests, as a reference) compare
taskvec's generator against: Hugging Face `model.generate` on whole prompts in left-padded batches."""

from __future__ import annotations

import re
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from taskvec.evaluation.stopping import eos_ids
from taskvec.prompts.config import Generation


class _AnswerStop(StoppingCriteria):
    """Finishes each row once its new text holds a complete answer sentence, and records where."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        pattern: re.Pattern[str],
        prompt_len: int,
        rows: int,
    ) -> None:
        self.tokenizer = tokenizer
        self.pattern = pattern
        self.prompt_len = prompt_len
        self.stopped_at: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        new = input_ids[:, self.prompt_len :].tolist()
        for row, ids in enumerate(new):
            if self.stopped_at[row] is None and self.pattern.search(
                str(self.tokenizer.decode(ids, skip_special_tokens=True))
            ):
                self.stopped_at[row] = len(ids)
        return torch.tensor([s is not None for s in self.stopped_at], device=input_ids.device)  # type: ignore[return-value]


def generation_config(settings: Generation, pad_id: int, eos_ids: list[int]) -> GenerationConfig:
    """Exactly the prompt config's decoding settings; no top-k or repetition penalty from model defaults."""
    sampling = (
        {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0}
        if settings.do_sample
        else {}
    )
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=settings.do_sample,
        repetition_penalty=1.0,
        pad_token_id=pad_id,
        eos_token_id=eos_ids,
        **sampling,
    )


def generate_padded(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt_ids: list[list[int]],
    settings: Generation,
    batch_size: int,
    stop: re.Pattern[str] | None = None,
) -> list[list[int]]:
    """The previous code path (the benchmark's `hf_generate_bs16`): `model.generate` on whole prompts.

    Same output contract as taskvec's generator (`tests/generating.py`). Prompts run longest
    first in left-padded batches with an attention mask, so (up to floating-point noise) a
    prompt's greedy output does not depend on the batch it lands in. It runs with
    `generation_config(settings)`; the model's own generation config is left as it is.
    """
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    eos = eos_ids(model, tokenizer)
    config = generation_config(settings, pad_id, eos)
    device = next(model.parameters()).device
    order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
    outputs: list[list[int]] = [[] for _ in prompt_ids]
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        input_ids, mask = _left_padded([prompt_ids[i] for i in batch], pad_id, device)
        width = input_ids.shape[1]
        stopper = _AnswerStop(tokenizer, stop, width, len(batch)) if stop is not None else None
        criteria = StoppingCriteriaList([stopper] if stopper is not None else [])
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=config,  # type: ignore[operator]
                stopping_criteria=criteria,
            )
        for row, idx in enumerate(batch):
            new = out[row, width:].tolist()
            ends = [new.index(e) + 1 for e in eos if e in new]
            if stopper is not None and stopper.stopped_at[row] is not None:
                ends.append(stopper.stopped_at[row])
            outputs[idx] = new[: min(ends, default=len(new))]
    return outputs


def _left_padded(
    rows: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded on the left to the longest row, and the attention mask."""
    width = max(len(row) for row in rows)
    ids = [[pad_id] * (width - len(row)) + row for row in rows]
    mask = [[0] * (width - len(row)) + [1] * len(row) for row in rows]
    return torch.tensor(ids, device=device), torch.tensor(mask, device=device)
