"""The run settings of an evaluation that are not part of the prompt config (the CLI's overrides)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from taskvec.config import Device, DType, check_tag
from taskvec.errors import TaskvecError
from taskvec.validation import describe_validation_error


class EvalOptions(BaseModel):
    """Run settings that are not part of the prompt config (the CLI's overrides)."""

    model_config = ConfigDict(extra="forbid")
    split: str = "test"
    max_samples: int | None = Field(None, ge=1, description="the first N samples of the split")
    batch_size: int = Field(32, ge=1, description="rows decoding at once")
    model: str | None = Field(None, description="overrides the prompt config's model")
    output_dir: Path = Path("results")
    device: Device = "auto"
    dtype: DType = "auto"
    seed: int = Field(0, description="sampling seed (matters only with generation.do_sample)")
    prefix_cache: bool = Field(
        True, description="prefill shared prompt prefixes once (off: every prompt in full)"
    )
    device_map: Literal["auto"] | None = Field(
        None, description="auto: accelerate spreads the model's blocks over the node's devices"
    )
    tag: Annotated[str | None, AfterValidator(check_tag)] = Field(
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
