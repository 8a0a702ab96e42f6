"""A session's metadata.json: what the run extracted, from what, and how it went.

The fields the seed release wrote (model, layers, positions, split, sizes, sample ids) are
required; everything recorded since has a default, so every earlier session still reads.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from taskvec.schemas.base import Record


class Skipped(BaseModel):
    """A sample left out because a position falls outside its prompt (`on_out_of_range: skip`)."""

    sample_idx: int
    sample_id: str
    n_tokens: int
    reason: str


class SessionMetadata(Record):
    """metadata.json, in the order the run writes it; `status` is running, interrupted, failed or
    complete (sessions written before it was recorded are complete)."""

    session_name: str
    status: str = "complete"
    model: str
    model_id: str | None = None
    model_source: str | None = None
    gguf_file: str | None = None
    model_short: str | None = None
    n_model_layers: int | None = None
    hidden_size: int
    layer_convention: str = "block_output"
    layers: list[int]
    layers_as_written: list[int] | None = None
    token_positions: list[int | str]
    keys: list[str] | None = None  # sessions without it: every layer x position
    prompt_type: str
    n_shot: int | None = None
    prompt_config: str | None = None  # a path, or "inline"
    dataset: dict[str, Any] | None = None  # DatasetConfig as written (checked where rebuilt)
    data_sha256: dict[str, str] = Field(default_factory=dict)
    split: str
    max_samples: int | None = None
    n_split_samples_used: int | None = None
    n_samples: int
    sample_ids: list[str]
    sample_idxs: list[int] | None = None  # sessions without it: 0..n-1
    skipped: list[Skipped] = Field(default_factory=list)
    use_chat_template: bool | None = None
    add_special_tokens: bool | None = None
    start_token: dict[str, str | None] | None = None
    dtype: str | None = None
    device: str | None = None
    seed: int | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str | None = None
    n_saved: int | None = None
    runs: list[dict[str, Any]] = Field(default_factory=list)
    evaluation_results: str | None = None  # the one-pass evaluation that wrote this session
    engine: dict[str, Any] | None = None
    timings: dict[str, Any] = Field(default_factory=dict)
    consolidated: str | None = None
    error: str | None = None

    @property
    def data_name(self) -> str | None:
        """The dataset's name, else its source (`finance`, `file`, ...); None when not recorded."""
        dataset = self.dataset or {}
        return dataset.get("name") or dataset.get("source")

    @property
    def strategy(self) -> str:
        """`cot 5-shot`: the prompt type and shot count, as tables name a session."""
        return f"{self.prompt_type} {self.n_shot}-shot"
