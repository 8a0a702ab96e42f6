"""Run settings every flow's config shares: which model, where it runs, in what precision, how
many rows at once, where results go and what their name starts with.

`RunSettings` is the base of the extraction config, the evaluation options, the patch config and
the steer config; each keeps its own default batch size and output folder. `DeviceMap` and
`PrefixCache` are declared here once for the configs that offer them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def _check_device(value: str) -> str:
    if not DEVICE_RE.match(value):
        raise ValueError("use auto, cpu, cuda or cuda:N")
    return value


def check_tag(value: str | None) -> str | None:
    """A tag starts a directory name: letters, digits, '.', '_' and '-' only."""
    if value is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", value):
        raise ValueError("use letters, digits, '.', '_' and '-' only (it becomes a directory name)")
    return value


def _prefix_cache(value: object) -> object:
    """The YAML words `auto` (share prefixes) and `off` as booleans; true and false as they are."""
    return {"auto": True, "off": False}.get(value, value) if isinstance(value, str) else value


def prefix_cache_word(on: bool) -> str:
    """How an extraction session records `prefix_cache` (the words its YAML takes)."""
    return "auto" if on else "off"


Device = Annotated[str, AfterValidator(_check_device)]
DType = Literal["auto", "float32", "bfloat16", "float16"]
Tag = Annotated[str | None, AfterValidator(check_tag)]
DeviceMap = Annotated[
    Literal["auto"] | None,
    Field(
        description="auto: accelerate spreads a model too large for one GPU over every visible "
        "GPU (its blocks over the node's devices)"
    ),
]
PrefixCache = Annotated[
    bool,
    BeforeValidator(_prefix_cache),
    Field(
        description="auto (or true): compute each shared prompt prefix once; off (or false): "
        "every prompt in full"
    ),
]


class RunSettings(BaseModel):
    """Where and how a run executes; the flows' configs add what they run."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="overrides the prompt config's model")
    device: Device = Field("auto", description="auto (cuda when present), cpu, cuda or cuda:N")
    dtype: DType = Field("auto", description="auto: bfloat16 on GPU, float32 on CPU")
    batch_size: int = Field(64, ge=1, description="upper bound on rows per forward")
    output_dir: Path = Field(Path("results"), description="where the run's folder is made")
    tag: Tag = Field(
        None, description="starts the run folder's name (letters, digits, '.', '_', '-')"
    )
