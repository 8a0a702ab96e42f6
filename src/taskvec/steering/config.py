"""Steer-config schema: read and checked before torch is imported, so a typo is reported in about a
second."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from taskvec.settings import DeviceMap, RunSettings
from taskvec.validation import load_yaml_model

DEFAULT_SCALES = [1.0]


class SteerConfig(RunSettings):
    """A steering run: the vector (an expression over sessions), the prompts generated from, the
    sweep."""

    prompt_config: Path = Field(description="the prompt config whose prompts are generated from")
    split: str = "test"
    max_samples: int | None = Field(None, ge=1, description="the first N samples of the split")
    vector: str = Field(description="expression over sessions, e.g. 'COT5 - VAN5' or '0.5 * A + B'")
    position: str = Field("last", description="which position of the sessions' vectors")
    session_dir: Path = Field(Path("outputs"), description="where session names are looked up")
    layers: list[int] = Field(
        description="blocks to steer, one condition each (negative: from the end)"
    )
    scales: list[float] | None = Field(
        None, description="add/ablate: the sweep of s (default [1.0]); replace takes none"
    )
    mode: Literal["add", "ablate", "replace"] = "add"
    where: Literal["last", "prompt", "generated", "all"] = "last"
    control: Literal["none", "random"] = Field(
        "none", description="random: also each condition with a seeded random direction, same norm"
    )
    seed: int = Field(0, description="seed of the random control directions")
    device_map: DeviceMap = None
    batch_size: int = Field(
        128, ge=1, description="rows decoding at once (a sweep multiplies the rows: conditions mix)"
    )

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("list at least one layer to steer")
        if len(set(value)) != len(value):
            raise ValueError(f"{value} lists a layer twice")
        return value

    @field_validator("vector")
    @classmethod
    def _vector(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the expression is empty; name a session, e.g. 'COT5 - VAN5'")
        return value

    @model_validator(mode="after")
    def _scales(self) -> SteerConfig:
        if self.mode == "replace" and self.scales is not None:
            raise ValueError(
                "`scales` has no meaning for mode replace (h = v); remove it or use add/ablate"
            )
        if self.scales is not None and not self.scales:
            raise ValueError("`scales` is empty; list at least one, or leave it out for [1.0]")
        return self

    @property
    def sweep(self) -> list[float]:
        """The scales swept (replace: one, unused)."""
        return self.scales if self.scales is not None else DEFAULT_SCALES


def load_steer_config(path: Path) -> SteerConfig:
    """Read and validate a steer config YAML, with one-line errors; relative paths are taken as
    written."""
    missing = (
        f"--config: file '{path}' not found; pass a steer config YAML "
        "(see configs/smollm2-135m/steer_past_tense_cot_last.yaml)"
    )
    return load_yaml_model(path, SteerConfig, "steer config", missing)
