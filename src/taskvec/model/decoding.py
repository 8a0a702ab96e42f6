"""What a generating row is and the small rules it follows: how its next token is chosen (greedy or
seeded sampling), when it stops (eos, the answer-sentence pattern, max_new_tokens), which
prompt-lookup drafts it checks and which of them it keeps."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from taskvec.model.drafts import lookup
from taskvec.prompts.config import Generation

if TYPE_CHECKING:
    from taskvec.model.steering import Steer


@dataclass
class Row:
    """One prompt while it generates: its tokens so far, its sampling generator, what was read, its
    steering."""

    idx: int
    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    rng: torch.Generator | None = None
    vectors: torch.Tensor | None = None
    steer: Steer | None = None


@dataclass
class GenerationStats:
    """Where the time went: prefill (prefixes and suffixes) vs decode steps, and the tokens each
    produced."""

    prefill_s: float = 0.0
    decode_s: float = 0.0
    prefill_tokens: int = 0
    decode_steps: int = 0
    generated_tokens: int = 0
    draft_tokens: int = 0  # prompt-lookup drafts checked (greedy), and how many of them were right
    accepted_tokens: int = 0


class Rules:
    """The per-row rules of one generation run (see the module docstring)."""

    def __init__(
        self,
        settings: Generation,
        eos: frozenset[int],
        tokenizer: PreTrainedTokenizerBase | None,
        stop: re.Pattern[str] | None,
        seed: int,
        stats: GenerationStats,
    ) -> None:
        if stop is not None and tokenizer is None:
            raise ValueError("a stop pattern needs the tokenizer to decode rows")
        self.settings, self.eos, self.tokenizer, self.stop, self.seed = (
            settings,
            eos,
            tokenizer,
            stop,
            seed,
        )
        self.warpers = (
            [TemperatureLogitsWarper(settings.temperature), TopPLogitsWarper(settings.top_p)]
            if settings.do_sample
            else []
        )
        self.stats = stats

    @property
    def greedy(self) -> bool:
        return not self.warpers

    def rng(self, idx: int) -> torch.Generator | None:
        """Row `idx`'s own sampling generator, seeded by (seed, idx): independent of batching and
        order."""
        if self.greedy:
            return None
        return torch.Generator().manual_seed(self.seed * 1_000_003 + idx)

    def advance(self, row: Row, logits: torch.Tensor) -> bool:
        """Append the row's next token (from its last-position logits); True when the row is
        finished."""
        return self.append(row, self.choose(row, logits))

    def append(self, row: Row, token: int) -> bool:
        row.tokens.append(token)
        self.stats.generated_tokens += 1
        return self.reason(row) is not None

    def choose(self, row: Row, logits: torch.Tensor) -> int:
        if self.greedy:
            return int(logits.argmax())
        scores = logits[None]
        for warp in self.warpers:
            scores = warp(None, scores)
        probs = torch.softmax(scores, dim=-1).cpu()
        return int(torch.multinomial(probs[0], 1, generator=row.rng))

    def reason(self, row: Row) -> str | None:
        """Why the row is finished ("eos", "answer", "length"), or None while it goes on."""
        if row.tokens[-1] in self.eos:
            return "eos"
        if self.stop is not None and self.tokenizer is not None:
            if self.stop.search(str(self.tokenizer.decode(row.tokens, skip_special_tokens=True))):
                return "answer"
        if len(row.tokens) >= self.settings.max_new_tokens:
            return "length"
        return None

    def draft(self, rows: Sequence[Row], room: int, per_row_max: int) -> list[list[int]]:
        """Per row, prompt-lookup drafts to check in this step (greedy only): as many as keep the
          step within
        `room` tokens, so drafts fill the room rows that finished left, never more than
          `per_row_max` a row."""
        per_row = min(per_row_max, room // len(rows) - 1) if self.greedy else 0
        if per_row <= 0:
            return [[] for _ in rows]
        return [
            lookup(
                np.asarray(row.prompt + row.tokens),
                min(per_row, self.settings.max_new_tokens - len(row.tokens) - 1),
            )
            for row in rows
        ]

    def accept(self, row: Row, guesses: list[int], draft: list[int]) -> tuple[bool, int]:
        """Append the model's greedy token after the last token, then after each draft it agreed
          with, up to the
        first disagreement or the row's end: (finished, drafts accepted)."""
        accepted, finished = 0, False
        for token in guesses:
            finished = self.append(row, token)
            if finished or accepted == len(draft) or token != draft[accepted]:
                break
            accepted += 1
        self.stats.draft_tokens += len(draft)
        self.stats.accepted_tokens += accepted
        return finished, accepted
