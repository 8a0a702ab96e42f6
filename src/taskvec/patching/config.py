"""Patch-config schema: read and checked before torch is imported, so a typo is reported in about a second."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from taskvec.settings import RunSettings
from taskvec.validation import load_yaml_model


class PatchConfig(RunSettings):
    """A patching run: where task vectors come from, the zero-shot prompts they are patched into,
    the sweep."""

    model: str | None = Field(None, description="overrides the prompt configs' model")
    task_vectors: str | None = Field(
        None,
        description="session (directory or name under session_dir) with layer_{L}_pos_last means",
    )
    session_dir: Path = Field(Path("outputs"), description="where session names are looked up")
    fewshot_prompt_config: Path | None = Field(
        None,
        description="few-shot prompt config: task vectors on the fly and the few-shot baseline",
    )
    zero_shot_prompt_config: Path
    tasks: list[str] | None = Field(
        None, description="builtin task sets to run one by one (overrides dataset.name)"
    )
    layers: list[int] | None = Field(
        None, description="blocks to sweep (default: all; negative counts from the end)"
    )
    mode: Literal["replace", "add"] = "replace"
    scale: float = Field(1.0, description="add mode only: hidden += scale * vector")
    dev_split: str = "train"
    test_split: str = "test"
    layer_choice: Literal["per_task", "shared"] = Field(
        "per_task",
        description="test each task at its own best dev layer, "
        "or all at the best mean one (both are reported)",
    )
    tv_max_samples: int = Field(
        50,
        ge=1,
        description="few-shot prompts averaged into the task vector (first N of dev_split)",
    )
    dev_max_samples: int = Field(
        50, ge=1, description="zero-shot dev queries for the sweep (the next N of dev_split)"
    )
    test_max_samples: int = Field(100, ge=1, description="test queries (first N of test_split)")
    batch_size: int = Field(
        8, ge=1, description="prompts per forward (a zero-shot prompt runs as 1 + n_layers rows)"
    )
    max_batch_tokens: int = Field(4096, ge=1)

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and not value:
            raise ValueError("list at least one layer, or leave `layers` out to sweep all blocks")
        return value

    @model_validator(mode="after")
    def _sources(self) -> PatchConfig:
        if self.task_vectors is None and self.fewshot_prompt_config is None:
            raise ValueError(
                "set `fewshot_prompt_config` (vectors extracted on the fly) or `task_vectors` (a session)"
            )
        if self.task_vectors is not None and self.tasks and len(self.tasks) > 1:
            raise ValueError(
                "a `task_vectors` session holds one task's vectors; with several `tasks` use "
                "`fewshot_prompt_config`"
            )
        if self.mode == "replace" and self.scale != 1.0:
            raise ValueError("`scale` applies to mode: add only; remove it or set `mode: add`")
        return self


def load_patch_config(path: Path) -> PatchConfig:
    """Read and validate a patch config YAML, with one-line errors; relative paths are taken as written."""
    missing = (
        f"--config: file '{path}' not found; pass a patch config YAML "
        "(see configs/smollm2-135m/words_patch_chat.yaml)"
    )
    return load_yaml_model(path, PatchConfig, "patch config", missing)
