"""The sample record every dataset source produces, and the dataset reference schema."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from taskvec.data.sources import SOURCES, listed


@dataclass(frozen=True)
class Sample:
    """One question with its gold answer.

    `answer` is the numeric value, or None for a text answer (a word, a name), whose
    exact form is `answer_text`; `context` holds passage text (FinQA pre_text, table,
    post_text) or is empty; `rationale` is a worked solution used by chain-of-thought
    demonstrations.
    """

    id: str
    question: str
    answer: float | None
    answer_text: str
    rationale: str = ""
    context: str = ""


class FieldMap(BaseModel):
    """Which column of a local file holds each sample field."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(
        None,
        description="id column; unset: a column named `id` if the file has one, else {split}_{row}",
    )
    question: str = "question"
    answer: str = "answer"
    rationale: str | None = Field(
        None, description="worked solution column; unset: a column named `rationale` if present"
    )
    context: str | None = Field(
        None, description="passage column; unset: a column named `context` if present"
    )


class DatasetConfig(BaseModel):
    """Where samples come from: a registered source (`data/sources.py`): the built-in generator,
    a local file, FinQA JSON, or the HF Hub."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field("builtin", description="a registered source (`taskvec.data.sources`)")
    name: str | None = Field(None, description="builtin task set or Hugging Face dataset name")
    path: Path | None = None
    splits: dict[str, Path] = Field(
        default_factory=dict, description="split name -> file (file/finqa)"
    )
    format: Literal["auto", "jsonl", "json", "csv", "parquet"] = "auto"
    fields: FieldMap = Field(default_factory=FieldMap)
    seed: int = Field(
        0, description="builtin generation; with `path` alone also the train/test split"
    )
    n_train: int = Field(512, ge=1)
    n_test: int = Field(256, ge=1)
    test_fraction: float = Field(
        0.5, gt=0, lt=1, description="`path` alone: share of rows (seeded draw) in the test split"
    )
    answer_type: Literal["number", "text"] = Field(
        "number", description="file/hf answers: parsed numbers or text kept as written"
    )
    case_sensitive: bool = Field(True, description="text answers: whether scoring compares case")

    @field_validator("source", mode="before")
    @classmethod
    def _registered(cls, value: object) -> object:
        """A name in the registry (the same error pydantic gives for a choice not offered)."""
        if not isinstance(value, str) or value not in SOURCES:
            expected = listed([repr(name) for name in SOURCES])
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": expected}
            )
        return value

    @model_validator(mode="after")
    def _distinct_split_files(self) -> DatasetConfig:
        files = [str(p) for p in self.splits.values()]
        if len(set(files)) < len(files):
            raise ValueError(
                "`dataset.splits` names one file for two splits, so they would share rows; "
                "give each split its own file, or use `path` alone (split deterministically)"
            )
        return self
