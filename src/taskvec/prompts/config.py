"""Prompt-config schema: shared by extraction and the evaluation pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taskvec.data.base import DatasetConfig
from taskvec.validation import load_yaml_model


class Demonstrations(BaseModel):
    """How few-shot demonstrations are chosen from `split` (never the query itself)."""

    model_config = ConfigDict(extra="forbid")
    split: str = "train"
    selection: Literal["first", "random"] = "first"
    seed: int = 0
    per_sample: bool = Field(
        False, description="random only: draw a fresh set for every query (less prefix sharing)"
    )


class Generation(BaseModel):
    """Decoding settings for the evaluation pipeline."""

    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int = Field(256, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)


class PromptConfig(BaseModel):
    """Everything that turns a dataset sample into the prompt text the model reads."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    model_family: str | None = None
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    prompt_type: Literal["vanilla", "cot"]
    n_shot: int = Field(0, ge=0)
    demonstrations: Demonstrations = Field(default_factory=Demonstrations)
    system_prompt: str = ""
    instruction: str = ""
    question_template: str = "Question: {question}"
    context_template: str = "{context}\n\n"
    answer_format: str = "The answer is {answer}."
    use_chat_template: bool = True
    start_token: str = Field(
        "auto",
        min_length=1,
        description="auto (the tokenizer's own, else <|endoftext|> for plain prompts), off, "
        "or the token every prompt begins with",
    )
    generation: Generation = Field(default_factory=Generation)

    @field_validator("start_token", mode="before")
    @classmethod
    def _off(cls, value: object) -> object:
        """`start_token: false` (or null) in YAML means off."""
        return "off" if value is False or value is None else value

    @model_validator(mode="after")
    def _templates(self) -> PromptConfig:
        """Each template must format with its own placeholder and no other."""
        for name, placeholder in (
            ("question_template", "question"),
            ("context_template", "context"),
            ("answer_format", "answer"),
        ):
            template = getattr(self, name)
            if "{" + placeholder + "}" not in template:
                raise ValueError(f"{name} must contain {{{placeholder}}}")
            try:
                template.format(**{placeholder: "x"})
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"{name} {template!r} cannot be formatted ({exc!r}); use only "
                    f"{{{placeholder}}} and write braces as {{{{ }}}}"
                ) from None
        return self


def load_prompt_config(path: Path) -> PromptConfig:
    """Read and validate a prompt config YAML, with one-line errors."""
    missing = (
        f"prompt_config: file '{path}' not found; point `prompt_config` at an existing YAML "
        "(shipped ones live under configs/{model_family}/)"
    )
    return load_yaml_model(path, PromptConfig, "prompt_config", missing)
