"""steering.json: one typed model, written by the run and read back by resume, the table and the
plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from taskvec.errors import TaskvecError
from taskvec.session.atomic import save_text

FILE = "steering.json"


class Scores(BaseModel):
    """A condition's scores over the prompts generated so far (`n`)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    accuracy: float  # the evaluation's own parse of the answer
    accuracy_prefix: float  # patching's rule: the generation begins with the whole gold answer
    n: int
    mean_new_tokens: float
    changed_vs_baseline: float  # share of prompts whose generation differs from the baseline's


class ConditionScores(Scores):
    layer: int
    scale: float
    mode: Literal["add", "ablate", "replace"]
    where: Literal["last", "prompt", "generated", "all"]
    control: Literal["none", "random"]


class VectorInfo(BaseModel):
    """Where the vector came from, and its norm at each layer."""

    model_config = ConfigDict(extra="forbid")
    expression: str
    sessions: list[str]
    position: str
    model: str
    norm_per_layer: dict[int, float]


class SteeringResult(BaseModel):
    """Everything a steering run reports; `status` is running, interrupted, failed or complete."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["running", "interrupted", "failed", "complete"]
    model: str
    model_short: str = ""  # "" in files written before it was recorded
    n_layers: int
    layer_convention: str = "block_output"
    prompt_config: str
    prompt_type: str
    n_shot: int
    split: str
    n_prompts: int
    scoring: dict[str, str]
    baseline: Scores
    conditions: list[ConditionScores]
    vector: VectorInfo
    config: dict[str, Any]
    runs: list[dict[str, Any]]
    versions: dict[str, str]

    def save(self, directory: Path) -> Path:
        path = directory / FILE
        save_text(
            path, json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
        )
        return path

    @classmethod
    def load(cls, directory: Path) -> SteeringResult:
        """Read `directory/steering.json`; a missing or foreign file is one line."""
        path = directory / FILE
        if not path.is_file():
            raise TaskvecError(
                f"--resume: '{directory}' is not a steering results directory (no {FILE}); "
                "pass the directory `taskvec steer` printed"
            )
        try:
            return cls.model_validate_json(path.read_text())
        except ValidationError as exc:
            raise TaskvecError(
                f"--resume: {path} is not a steering result ({exc.errors()[0]['msg']})"
            ) from exc
