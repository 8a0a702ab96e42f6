"""An evaluation's metrics.json: accuracy and counts over the finished predictions, what was run
and how it went. Fields later releases added have defaults, so every earlier file still reads."""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

from taskvec.schemas.base import Record


class KindScore(BaseModel):
    """Accuracy of one question kind (the builtin generator's)."""

    n: int
    n_correct: int
    accuracy: float


class Metrics(Record):
    """metrics.json, in the order the run writes it; `status` is running, interrupted, failed or
    complete. Every field has a default: a results folder another tool wrote (model, split and
    prompt fields alone) still reads for correlate's same-run check."""

    session_name: str | None = None
    status: str = "complete"
    accuracy: float = math.nan
    n_samples: int | None = None
    n_correct: int | None = None
    n_parse_failures: int = 0
    n_truncated: int = 0
    accuracy_with_fallback: float | None = None
    n_generated_tokens: int | None = None
    by_kind: dict[str, KindScore] | None = None  # only where the data has kinds
    n_total: int | None = None
    split: str | None = None
    model: str | None = None
    model_id: str | None = None
    model_short: str | None = None
    prompt_type: str | None = None
    n_shot: int | None = None
    start_token: dict[str, str | None] | None = None
    generation: dict[str, Any] = Field(default_factory=dict)  # decoding settings and batching
    truncated_policy: str | None = None
    dtype: str | None = None
    device: str | None = None
    timings: dict[str, Any] = Field(default_factory=dict)
    runs: list[dict[str, Any]] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)  # the options, config path, prompt config
    world_size: int = 1
    extraction_session: str | None = None  # the one-pass session written with it (--extract)

    @property
    def strategy(self) -> str:
        """`cot 5-shot`: the prompt type and shot count, as tables name a run."""
        return f"{self.prompt_type} {self.n_shot}-shot"
