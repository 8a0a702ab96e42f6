"""Extraction config schema (YAML), validated before anything heavy runs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_serializer, field_validator

from taskvec.positions import Position, check_position
from taskvec.prompts.config import PromptConfig, load_prompt_config
from taskvec.settings import DeviceMap, PrefixCache, RunSettings, prefix_cache_word
from taskvec.validation import load_yaml_model


class ExtractionConfig(RunSettings):
    """What to extract: model, prompts, split, layers and positions, and where to write."""

    prompt_config: Path | PromptConfig = Field(
        description="a prompt config YAML, or one inlined (as in a session's config.yaml)"
    )
    layers: list[int] = Field(min_length=1)
    token_positions: list[Position] = Field(["last"], min_length=1)
    split: str = "train"
    max_samples: int | None = Field(None, ge=1)
    on_out_of_range: Literal["error", "skip"] = Field(
        "error",
        description="a position outside some sample's prompt: stop with an error, "
        "or skip that sample (recorded)",
    )
    batch_size: int = Field(64, ge=1, description="upper bound on samples per forward")
    max_batch_tokens: int | None = Field(
        None, ge=1, description="token budget per forward; auto by device"
    )
    prefix_cache: PrefixCache = True
    batching: Literal["auto", "packed", "padded"] = Field(
        "auto", description="auto: packed on CPU, padded on GPU"
    )
    output_dir: Path = Path("outputs")
    device_map: DeviceMap = None
    seed: int = 0

    @field_validator("token_positions", mode="before")
    @classmethod
    def _positions(cls, value: object) -> object:
        if isinstance(value, (str, int)):
            value = [value]
        if isinstance(value, list):
            value = [check_position(v) for v in value]
            if len(set(map(str, value))) != len(value):
                raise ValueError("duplicate positions; list each once")
        return value

    @field_validator("layers")
    @classmethod
    def _layers(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("duplicate layers; list each once")
        return value

    @field_serializer("prefix_cache")
    def _prefix_cache_word(self, value: bool) -> str:
        """Sessions record `auto` or `off`, the words the YAML takes, as they always have."""
        return prefix_cache_word(value)


def load_config(path: Path) -> ExtractionConfig:
    """Read and validate an extraction config; relative prompt paths resolve against CWD, then
    the file's folder."""
    missing = f"--config: file '{path}' not found; pass the path of an extraction config YAML"
    cfg = load_yaml_model(path, ExtractionConfig, "config", missing)
    prompt = cfg.prompt_config
    if (
        isinstance(prompt, Path)
        and not prompt.is_absolute()
        and not prompt.exists()
        and (path.parent / prompt).exists()
    ):
        cfg = cfg.model_copy(update={"prompt_config": path.parent / prompt})
    return cfg


def check_configs(path: Path) -> None:
    """Validate an extraction config and its prompt config (YAML and schema only; imports neither
    torch nor transformers)."""
    cfg = load_config(path)
    if isinstance(cfg.prompt_config, Path):
        load_prompt_config(cfg.prompt_config)
