"""The sweep: each task's vector patched at every layer on dev, then tested at the chosen layers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel

from taskvec.model.batched import GreedyRunner, RunSpec
from taskvec.model.intervene import mean_last_token_vectors
from taskvec.patching.config import PatchConfig
from taskvec.patching.prompts import PatchPrepared, TaskPrompts
from taskvec.patching.scoring import AnswerScorer


@dataclass(frozen=True)
class Scores:
    """Per prompt and row (0 = unpatched, 1+i = patched at the i-th layer run): correct or not,
    restricted label, prediction."""

    correct: list[list[bool]]
    restricted: list[list[bool | None]]
    predictions: list[list[str]]

    def accuracy(self, row: int) -> float:
        return sum(c[row] for c in self.correct) / len(self.correct) if self.correct else math.nan

    def restricted_accuracy(self, row: int) -> float | None:
        values = [r[row] for r in self.restricted]
        return (
            None if not values or values[0] is None else sum(bool(v) for v in values) / len(values)
        )


def score_rows(
    runner: GreedyRunner,
    scorer: AnswerScorer,
    prompts: list[list[int]],
    gold: list[str],
    layers: list[int],
    vectors: dict[int, torch.Tensor] | None,
    cfg: PatchConfig,
) -> Scores:
    """Run `prompts` (patched at `layers` if `vectors`) and score every row against `gold`."""
    spec = RunSpec(
        layers if vectors is not None else [],
        vectors,
        cfg.mode,
        cfg.scale,
        scorer.max_new_tokens,
        scorer.watch,
    )
    rows = runner.run(prompts, spec, lambda i, text: scorer.keep(gold[i], text))
    correct = [[scorer.correct(g, r.text) for r in rs] for g, rs in zip(gold, rows, strict=True)]
    restricted = [
        [None if (lab := scorer.restricted(r.watched)) is None else lab == g for r in rs]
        for g, rs in zip(gold, rows, strict=True)
    ]
    return Scores(correct, restricted, [[scorer.prediction(r.text) for r in rs] for rs in rows])


def best_layer(curve: dict[int, float], zero_shot: float) -> int | None:
    """The layer with the highest dev accuracy (ties: the shallower), or None when none beats
    zero-shot (no effect)."""
    layer = max(curve, key=lambda k: (curve[k], -k))
    return layer if curve[layer] > zero_shot else None


@dataclass
class TaskRun:
    """One task's dev sweep and what the test needs."""

    task: TaskPrompts
    scorer: AnswerScorer
    vectors: dict[int, torch.Tensor]
    dev: Scores
    dev_few: Scores | None
    curve: dict[int, float]

    @property
    def best(self) -> int | None:
        return best_layer(self.curve, self.dev.accuracy(0))


def task_scorer(prep: PatchPrepared, task: TaskPrompts) -> AnswerScorer:
    """How a task's answers are scored (from its dev and test gold answers)."""
    return AnswerScorer(prep.tokenizer, task.dev.gold + task.test.gold, task.case_sensitive)


def run_dev(
    model: PreTrainedModel, runner: GreedyRunner, prep: PatchPrepared, task: TaskPrompts
) -> TaskRun:
    """The task vector (few-shot prompts' mean, prefix-shared) and the dev sweep over every layer."""
    cfg, layers = prep.config, prep.layers
    scorer = task_scorer(prep, task)
    vectors = prep.session_vectors or mean_last_token_vectors(
        model, task.vector_prompts, layers, cfg.batch_size, cfg.max_batch_tokens
    )
    dev = score_rows(runner, scorer, task.dev.zero, task.dev.gold, layers, vectors, cfg)
    dev_few = (
        score_rows(runner, scorer, task.dev.few, task.dev.gold, [], None, cfg)
        if task.dev.few
        else None
    )
    return TaskRun(
        task,
        scorer,
        vectors,
        dev,
        dev_few,
        {layer: dev.accuracy(1 + i) for i, layer in enumerate(layers)},
    )


def run_test(
    runner: GreedyRunner, run: TaskRun, shared: int | None, cfg: PatchConfig
) -> dict[str, Any]:
    """Test accuracies: zero-shot, few-shot, and the task vector at the task's own and at the shared layer."""
    task, own = run.task, run.best
    layers = sorted({layer for layer in (own, shared) if layer is not None})
    test = score_rows(runner, run.scorer, task.test.zero, task.test.gold, layers, run.vectors, cfg)
    few = (
        score_rows(runner, run.scorer, task.test.few, task.test.gold, [], None, cfg)
        if task.test.few
        else None
    )
    zero = test.accuracy(0)

    def at(
        layer: int | None,
    ) -> float:  # no effect: nothing is patched, the answer is the zero-shot one
        return zero if layer is None else test.accuracy(1 + layers.index(layer))

    chosen = own if cfg.layer_choice == "per_task" else shared
    col = 1 + layers.index(chosen) if chosen is not None else 0
    return {
        "n": len(task.test.gold),
        "zero_shot": zero,
        "few_shot": few.accuracy(0) if few else None,
        "layer": chosen,
        "task_vector": at(chosen),
        "task_vector_per_task": at(own),
        "task_vector_shared": at(shared),
        "zero_shot_restricted": test.restricted_accuracy(0),
        "few_shot_restricted": few.restricted_accuracy(0) if few else None,
        "task_vector_restricted": test.restricted_accuracy(col),
        "gold_first": task.test.gold[:10],
        "zero_shot_predictions_first": [p[0] for p in test.predictions[:10]],
        "task_vector_predictions_first": [p[col] for p in test.predictions[:10]],
        "few_shot_predictions_first": [p[0] for p in few.predictions[:10]] if few else None,
    }
