"""The run settings of an evaluation that are not part of the prompt config (the CLI's overrides)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError

from taskvec.errors import TaskvecError
from taskvec.settings import DeviceMap, PrefixCache, RunSettings, Tag
from taskvec.validation import describe_validation_error


class EvalOptions(RunSettings):
    """Run settings that are not part of the prompt config (the CLI's overrides)."""

    split: str = "test"
    max_samples: int | None = Field(None, ge=1, description="the first N samples of the split")
    batch_size: int = Field(32, ge=1, description="rows decoding at once")
    seed: int = Field(0, description="sampling seed (matters only with generation.do_sample)")
    prefix_cache: PrefixCache = True
    device_map: DeviceMap = None
    tag: Tag = Field(
        None,
        description="starts the results directory's name "
        "(default {prompt_type}_{n_shot}shot_{split})",
    )
    draft_tokens: int = Field(
        8,
        ge=0,
        description="greedy: prompt-lookup drafts a row checks per step while the batch has room (0: none)",
    )


def parse_options(overrides: dict[str, Any]) -> EvalOptions:
    """`EvalOptions` from the given overrides (None means not given); errors in one line."""
    try:
        return EvalOptions.model_validate({k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise TaskvecError(describe_validation_error(exc, "evaluate", EvalOptions)) from exc
