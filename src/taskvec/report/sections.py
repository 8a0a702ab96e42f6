"""The parts of a report: each runs its analysis into the report's figure folder and says how to redo it."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from taskvec.analysis.plotting import new_figure, save_figure, session_labels
from taskvec.report.html import Figure, Section
from taskvec.report.items import Study, read_json, read_record
from taskvec.schemas.metrics import Metrics
from taskvec.schemas.patching import PatchSummary
from taskvec.session.reader import Session


def command(*words: object) -> str:
    return shlex.join(str(w) for w in words)


def sessions_section(study: Study) -> Section:
    section = Section("Sessions")
    labels = session_labels(study.sessions) if study.sessions else []
    rows = [
        {
            "label": label,
            "model": s.info.model_short,
            "strategy": s.info.strategy,
            "data": s.info.data_name,
            "split": s.info.split,
            "n": len(s.sample_ids),
            "layers": ", ".join(map(str, s.layers)),
            "positions": ", ".join(s.positions),
            "created": str(s.info.created_at or "")[:19],
            "directory": str(s.task_vector_dir),
        }
        for label, s in zip(labels, study.sessions)
    ]
    if rows:
        section.table(pd.DataFrame(rows))
    return section


def _evaluation_rows(metrics: dict[Path, Metrics]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for folder, m in metrics.items():
        rows.append(
            {
                "results": folder.name,
                "model": m.model_short,
                "strategy": m.strategy,
                "split": m.split,
                "n": m.n_samples,
                "correct": m.n_correct,
                "accuracy": m.accuracy,
                "no answer": m.n_parse_failures,
                "truncated": m.n_truncated,
            }
        )
    return rows


def _short_name(row: dict[str, object]) -> str:
    """The results folder's name without the model and the word "results": what tells two runs apart (the
    tag and the timestamp) stays, so two runs of one strategy get two labels."""
    return str(row["results"]).replace(f"_{row['model']}_results", "")


def _accuracy_plot(rows: list[dict[str, object]], path: Path) -> Path:
    fig = new_figure(max(6.0, 1.2 * len(rows) + 2), 4.2)
    ax = fig.subplots()
    names = [f"{r['strategy']}\n{_short_name(r)}" for r in rows]
    ax.bar(range(len(rows)), [float(r["accuracy"]) for r in rows], color="C0")  # type: ignore[arg-type]
    for x, r in enumerate(rows):
        ax.text(x, float(r["accuracy"]) + 0.02, f"{r['correct']}/{r['n']}", ha="center")  # type: ignore[arg-type]
    ax.set_xticks(range(len(rows)), names, fontsize="x-small", rotation=20, ha="right")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("accuracy")
    ax.set_title("Evaluation accuracy per results directory")
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def _by_kind(metrics: dict[Path, Metrics]) -> pd.DataFrame:
    """Accuracy per question kind (rows) and results directory (columns), where metrics have `by_kind`."""
    columns = {}
    for folder, m in metrics.items():
        by_kind = m.by_kind
        if by_kind:
            columns[folder.name] = {k: f"{v.n_correct}/{v.n}" for k, v in by_kind.items()}
    return pd.DataFrame(columns).rename_axis("kind").reset_index() if columns else pd.DataFrame()


def evaluation_section(study: Study, figures: Path, remake: str) -> Section:
    section = Section("Evaluation")
    metrics = {f: read_record(f / "metrics.json", Metrics) for f in study.evaluations}
    rows = _evaluation_rows(metrics)
    if not rows:
        return section
    section.table(pd.DataFrame(rows))
    reruns = "\n".join(command("taskvec", "evaluate", "--resume", f) for f in study.evaluations)
    section.text(
        "Each evaluation re-runs from its own config.yaml (see its first line); to finish one:"
    )
    section.code(reruns)
    plot = _accuracy_plot(rows, figures / "evaluation_accuracy.png")
    reads = [str(f / "metrics.json") for f in study.evaluations]
    section.figure(Figure(plot, "Accuracy per strategy", remake, reads))
    kinds = _by_kind(metrics)
    if len(kinds):
        section.table(kinds, "correct / n per question kind")
    return section


def patching_section(study: Study) -> Section:
    section = Section("Task-vector patching")
    for folder in study.patchings:
        summary = read_record(folder / "patching.json", PatchSummary)
        rows = [
            {
                "task": t.task,
                **{k: t.test.get(k) for k in ("zero_shot", "few_shot", "task_vector", "layer")},
            }
            for t in summary.per_task
        ]
        section.text(
            f"{folder.name}: model {summary.model}, mode {summary.mode}, "
            f"shared best layer {summary.best_layer} of {summary.n_layers}"
        )
        if rows:
            section.table(pd.DataFrame(rows).fillna("-"), "test accuracy per task")
        if (folder / "patching.png").is_file():
            redo = command("taskvec", "patch", "--config", summary.config_path or "PATCH_CONFIG")
            section.figure(
                Figure(
                    folder / "patching.png",
                    f"Patching: {folder.name}",
                    redo,
                    [str(folder / "patching.json")],
                )
            )
    return section


def _score(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def steering_section(study: Study) -> Section:
    """steering.json: the baseline, one row per condition, the vector; steering.png when there is one."""
    section = Section("Steering")
    for folder in study.steerings:
        data = read_json(folder / "steering.json")
        base, vector = data.get("baseline") or {}, data.get("vector") or {}
        section.text(
            f"{folder.name}: vector {vector.get('expression')} at position {vector.get('position')}; "
            f"unsteered accuracy {_score(base.get('accuracy'))} "
            f"(prefix {_score(base.get('accuracy_prefix'))}, n {base.get('n')})"
        )
        conditions = pd.DataFrame(data.get("conditions") or [])
        if len(conditions):
            section.table(conditions, "one row per steering condition")
        redo = (  # a steering run keeps its resolved config beside steering.json
            command("taskvec", "steer", "--config", folder / "config.yaml")
            if (folder / "config.yaml").is_file()
            else f"the steering run that wrote {folder} (steering.json records it)"
        )
        if (folder / "steering.png").is_file():
            section.figure(
                Figure(
                    folder / "steering.png",
                    f"Steering: {folder.name}",
                    redo,
                    [str(folder / "steering.json")],
                )
            )
    return section


def session_args(sessions: Sequence[Session]) -> list[str]:
    return [str(s.task_vector_dir) for s in sessions]
