"""patching.json: the mean dev curve over the swept layers, the shared best layer, test means and
each task's curve and test accuracies. Beyond the model, its depth and the mode every field has a
default, so a summary another tool wrote still reads."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from taskvec.schemas.base import Record


class DevCurve(Record):
    """Mean dev accuracy per patched layer, and unpatched zero- and few-shot."""

    layers: list[int] = Field(default_factory=list)
    task_vector: dict[int, float] = Field(default_factory=dict)
    zero_shot: float | None = None
    few_shot: float | None = None


class TaskDev(Record):
    """One task's dev sweep: its curve and best layer (None: no layer beats zero-shot)."""

    n: int = 0
    n_task_vector_prompts: int = 0
    zero_shot: float | None = None
    few_shot: float | None = None
    task_vector: dict[int, float] = Field(default_factory=dict)
    task_vector_restricted: dict[int, float | None] = Field(default_factory=dict)
    best_layer: int | None = None
    effect: bool = False


class TaskSummary(Record):
    """One task's entry of `per_task`: how it was scored, its dev sweep and test accuracies
    (`test` holds accuracies and the first predictions, as `patching.sweep.run_test` makes
    them)."""

    task: str
    scoring: str = ""
    single_token_answers: bool = False
    restricted_labels: list[str] | None = None
    dev: TaskDev = Field(default_factory=TaskDev)
    test: dict[str, Any]
    sample_ids: dict[str, list[str]] = Field(default_factory=dict)
    example_prompts: dict[str, str] = Field(default_factory=dict)


class PatchSummary(Record):
    """patching.json, in the order the run writes it (`test` and `test_learned_in_context`: mean
    test accuracies over all tasks and over those few-shot prompts teach)."""

    model: str
    n_layers: int
    layer_convention: str = "block_output"
    mode: str
    scale: float = 1.0
    layer_choice: str = "per_task"
    start_token: dict[str, dict[str, str | None]] = Field(default_factory=dict)
    tasks: list[str] = Field(default_factory=list)
    dev: DevCurve = Field(default_factory=DevCurve)
    best_layer: int | None = None
    best_layer_depth: float | None = None
    effect: bool = False
    best_layers_per_task: dict[str, int | None] = Field(default_factory=dict)
    test: dict[str, Any] = Field(default_factory=dict)
    test_learned_in_context: dict[str, Any] = Field(default_factory=dict)
    per_task: list[TaskSummary] = Field(default_factory=list)
    timings: dict[str, Any] = Field(default_factory=dict)
    world_size: int = 1
    config: dict[str, Any] = Field(default_factory=dict)
    config_path: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
