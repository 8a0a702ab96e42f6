"""What a patching run reports: per task and mean accuracies (patching.json) and the CLI's table."""

from __future__ import annotations

import math
from typing import Any

from taskvec.patching.prompts import PatchPrepared
from taskvec.patching.sweep import TaskRun
from taskvec.schemas.patching import PatchSummary

ICL_THRESHOLD = (
    0.5  # tasks whose few-shot test accuracy reaches this are the ones the model learns in context
)


def task_summary(run: TaskRun, layers: list[int], test: dict[str, Any]) -> dict[str, Any]:
    """One task's entry of `per_task`: how it was scored, its dev curve and best layer, its test
    accuracies."""
    task = run.task
    return {
        "task": task.name,
        "scoring": run.scorer.rule,
        "single_token_answers": run.scorer.single_token,
        "restricted_labels": run.scorer.labels or None,
        "dev": {
            "n": len(task.dev.gold),
            "n_task_vector_prompts": len(task.vector_prompts),
            "zero_shot": run.dev.accuracy(0),
            "few_shot": run.dev_few.accuracy(0) if run.dev_few else None,
            "task_vector": run.curve,
            "task_vector_restricted": {
                layer: run.dev.restricted_accuracy(1 + i) for i, layer in enumerate(layers)
            },
            "best_layer": run.best,
            "effect": run.best is not None,
        },
        "test": test,
        "sample_ids": task.ids,
        "example_prompts": task.example,
    }


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def _means(per_task: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean test accuracies over `per_task`, and TV / few-shot."""
    keys = (
        "zero_shot",
        "few_shot",
        "task_vector",
        "task_vector_per_task",
        "task_vector_shared",
        "zero_shot_restricted",
        "few_shot_restricted",
        "task_vector_restricted",
    )
    means: dict[str, Any] = {key: _mean([t["test"][key] for t in per_task]) for key in keys}
    means["task_vector_over_few_shot"] = (
        means["task_vector"] / means["few_shot"] if means["few_shot"] else None
    )
    means["n_tasks"] = len(per_task)
    return means


def summarise(
    prep: PatchPrepared,
    per_task: list[dict[str, Any]],
    dev_curve: dict[int, float],
    shared: int | None,
) -> dict[str, Any]:
    """patching.json without config, versions and timings: the mean dev curve, the shared best
    layer, test means, per task."""
    learned = [t for t in per_task if (t["test"]["few_shot"] or 0.0) >= ICL_THRESHOLD]
    return {
        "model": prep.model_ref.spec,
        "n_layers": prep.n_layers,
        "layer_convention": "block_output",
        "mode": prep.config.mode,
        "scale": prep.config.scale,
        "layer_choice": prep.config.layer_choice,
        "start_token": prep.start_tokens,
        "tasks": [t["task"] for t in per_task],
        "dev": {
            "layers": prep.layers,
            "task_vector": dev_curve,
            "zero_shot": _mean([t["dev"]["zero_shot"] for t in per_task]),
            "few_shot": _mean([t["dev"]["few_shot"] for t in per_task]),
        },
        "best_layer": shared,
        "best_layer_depth": shared / prep.n_layers if shared is not None else None,
        "effect": shared is not None,
        "best_layers_per_task": {t["task"]: t["dev"]["best_layer"] for t in per_task},
        "test": _means(per_task),
        "test_learned_in_context": {
            **_means(learned),
            "threshold": ICL_THRESHOLD,
            "tasks": [t["task"] for t in learned],
        },
        "per_task": per_task,
    }


def layer_text(layer: int | None) -> str:
    return "no effect" if layer is None else str(layer)


def format_summary(summary: PatchSummary) -> str:
    """The CLI's report: the mean dev curve, then per task and mean test accuracies."""

    def fmt(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = [f"{'layer':>5}  {'dev TV (mean)':>13}"]
    for layer in summary.dev.layers:
        mark = "  <- best" if layer == summary.best_layer else ""
        lines.append(f"{layer:>5}  {summary.dev.task_vector[layer]:>13.3f}{mark}")
    if summary.best_layer is None:
        lines.append("no effect: no layer's mean dev accuracy beats zero-shot")
    means = [
        (f"{label} ({m['n_tasks']})", m)
        for label, m in (
            ("mean, all tasks", summary.test),
            (f"mean, few-shot >= {ICL_THRESHOLD}", summary.test_learned_in_context),
        )
    ]
    width = max(len(name) for name in [*(t.task for t in summary.per_task), *dict(means)])
    lines.append(
        f"{'task':<{width}} {'zero':>5} {'few':>5} {'TV':>5} {'layer':>9} {'TV shared':>9}"
    )
    for t in summary.per_task:
        s = t.test
        lines.append(
            f"{t.task:<{width}} {fmt(s['zero_shot']):>5} {fmt(s['few_shot']):>5} "
            f"{fmt(s['task_vector']):>5} {layer_text(s['layer']):>9} "
            f"{fmt(s['task_vector_shared']):>9}"
        )
    for name, m in means:
        lines.append(
            f"{name:<{width}} {fmt(m['zero_shot']):>5} {fmt(m['few_shot']):>5} "
            f"{fmt(m['task_vector']):>5} {'':>9} {fmt(m['task_vector_shared']):>9}  "
            f"TV/few {fmt(m['task_vector_over_few_shot'])}"
        )
    lines.append(
        f"layer choice: {summary.layer_choice}; shared best layer "
        f"{layer_text(summary.best_layer)} of {summary.n_layers}"
    )
    return "\n".join(lines)
