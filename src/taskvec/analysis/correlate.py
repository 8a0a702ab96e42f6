"""Do a session's vectors say whether the model will answer correctly?

Per-sample vectors are joined to an evaluation's `predictions.jsonl` by sample id. For each
layer and position: the cross-validated accuracy of a linear probe that predicts correctness,
against the majority-class baseline, and the mean cosine similarity to the task vector of the
correct and the incorrect samples.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from taskvec.analysis.plotting import (
    layer_ticks,
    legend_outside,
    new_figure,
    plain_numbers,
    save_figure,
    session_labels,
)
from taskvec.errors import TaskvecError
from taskvec.model.identity import recorded_identity
from taskvec.positions import VectorKey
from taskvec.session.reader import Session

PREDICTIONS_FILE = "predictions.jsonl"
MAX_FOLDS = 5


def read_correctness(results: Path) -> dict[str, bool]:
    """`sample_id -> correct` from `{results}/predictions.jsonl` (or `results` itself if it is a file)."""
    path = results if results.is_file() else results / PREDICTIONS_FILE
    if not path.is_file():
        raise TaskvecError(
            f"no predictions file at '{path}'; pass the results directory an evaluation wrote (it "
            f"holds {PREDICTIONS_FILE})"
        )
    correct: dict[str, bool] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise TaskvecError(f"{path}:{number}: not valid JSON") from None
        if (
            not isinstance(record, dict)
            or "sample_id" not in record
            or not isinstance(record.get("correct"), bool)
        ):
            raise TaskvecError(
                f"{path}:{number}: each line needs a 'sample_id' and a boolean 'correct'"
            )
        sample_id = str(record["sample_id"])
        if sample_id in correct:
            raise TaskvecError(
                f"{path}:{number}: sample_id '{sample_id}' appears twice; keep one prediction per sample"
            )
        correct[sample_id] = record["correct"]
    return correct


def check_same_prompts(session: Session, results_dir: Path) -> None:
    """Refuse to join vectors and predictions made from different models, splits or prompts,
    naming the difference."""
    folder = results_dir.parent if results_dir.is_file() else results_dir
    metrics = (
        json.loads((folder / "metrics.json").read_text())
        if (folder / "metrics.json").is_file()
        else {}
    )
    meta = session.metadata
    problems = [
        f"{f}: session {meta.get(f)!r}, predictions {metrics[f]!r}"
        for f in ("split", "prompt_type", "n_shot")
        if f in metrics and metrics[f] != meta.get(f)
    ]
    if "model" in metrics and recorded_identity(metrics) != recorded_identity(meta):
        problems.insert(
            0,
            f"model: session {meta.get('model')!r} ({recorded_identity(meta)}), predictions "
            f"{metrics['model']!r} ({recorded_identity(metrics)})",
        )
    written = {row["sample_id"]: row["prompt"] for row in session.prompts}
    predictions = folder / PREDICTIONS_FILE
    lines = predictions.read_text().splitlines() if predictions.is_file() else []
    predicted = {
        row["sample_id"]: row.get("prompt") for row in map(json.loads, filter(str.strip, lines))
    }
    differ = [
        i
        for i, text in predicted.items()
        if i in written and text is not None and text != written[i]
    ]
    if differ:
        problems.append(
            f"the prompt text differs for {len(differ)} of {len(set(written) & set(predicted))} "
            "joined samples "
            f"(e.g. '{differ[0]}')"
        )
    if problems:
        raise TaskvecError(
            f"session '{session.name}' and the predictions in '{folder}' come from different runs "
            f"({'; '.join(problems)}); "
            "pair the session with an evaluation of the same model, split and prompt config, or "
            "pass --force to join anyway"
        )


def _probe(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """Mean and std of stratified k-fold probe accuracy, and k; NaN when a class has fewer than
    two samples."""
    folds = min(MAX_FOLDS, int(np.bincount(y, minlength=2).min()))
    if folds < 2:
        return math.nan, math.nan, 0
    # ~10x faster than lbfgs on few samples
    probe = make_pipeline(StandardScaler(), LogisticRegression(solver="liblinear"))
    scores = cross_val_score(
        probe, x, y, cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    )
    return float(scores.mean()), float(scores.std()), folds


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def correlate(
    session: Session, results_dir: Path, out: Path | None = None, force: bool = False
) -> pd.DataFrame:
    """One row per key: probe accuracy vs majority baseline, and cosine to the task vector of
    correct vs incorrect samples.

    Vectors and predictions must come from the same model, split and prompts (`force` joins them anyway).
    `attrs` holds the join counts (`matched`, `session_only`, `predictions_only`), a `note` when the
    probe cannot run, and the written `plots`; correlate.csv goes next to them in `out` (None:
    writes nothing).
    """
    correct = read_correctness(results_dir)
    if not force:
        check_same_prompts(session, results_dir)
    ids = session.sample_ids
    rows = [i for i, sample_id in enumerate(ids) if sample_id in correct]
    join = {
        "matched": len(rows),
        "session_only": len(ids) - len(rows),
        "predictions_only": len(set(correct) - set(ids)),
    }
    if not rows:
        raise TaskvecError(
            f"session '{session.name}' and the predictions in '{results_dir}' share no sample id "
            f"(session: {', '.join(ids[:3]) or 'no samples'}...; predictions: "
            f"{', '.join(list(correct)[:3])}...); "
            "evaluate the split the session extracted (`taskvec evaluate --config PROMPT_CONFIG "
            f"--split {session.metadata.get('split')}`)"
        )
    y = np.array([correct[ids[i]] for i in rows], dtype=int)
    n_correct = int(y.sum())
    note = ""
    if min(n_correct, len(y) - n_correct) < 2:
        note = (
            f"{n_correct} of {len(y)} matched samples are correct: the probe needs at least two of "
            "each class, "
            "so probe accuracy is NaN"
        )
    table_rows = []
    for key in session.keys:
        parsed = VectorKey.parse(key)
        layer, position = parsed.layer, str(parsed.position)
        vectors = session.vectors(key)[rows]
        cos = torch.nn.functional.cosine_similarity(
            vectors.double(), session.mean(key).double()[None], dim=1
        ).numpy()
        accuracy, accuracy_std, folds = _probe(vectors.double().numpy(), y)
        table_rows.append(
            {
                "key": key,
                "layer": layer,
                "position": position,
                "n": len(y),
                "n_correct": n_correct,
                "baseline_acc": max(n_correct, len(y) - n_correct) / len(y),
                "probe_acc": accuracy,
                "probe_acc_std": accuracy_std,
                "folds": folds,
                "cos_correct": _mean_or_nan(cos[y == 1]),
                "cos_incorrect": _mean_or_nan(cos[y == 0]),
            }
        )
    table = pd.DataFrame(table_rows)
    table.attrs.update(join, note=note)
    if out is None:
        return table
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "correlate.csv", index=False)
    table.attrs["csv"] = out / "correlate.csv"
    table.attrs["plots"] = [
        _plot(table, session_labels([session])[0], join, note, out / "correlate.png")
    ]
    return table


def _plot(table: pd.DataFrame, label: str, join: dict[str, int], note: str, path: Path) -> Path:
    fig = new_figure(12, 6.0)
    acc_ax, cos_ax = fig.subplots(1, 2)
    for i, (position, group) in enumerate(table.groupby("position", sort=False)):
        acc_ax.errorbar(
            group.layer,
            group.probe_acc,
            yerr=group.probe_acc_std,
            marker="o",
            capsize=3,
            color=f"C{i}",
            label=f"probe, pos {position}",
        )
        cos_ax.plot(
            group.layer,
            group.cos_correct,
            marker="o",
            color=f"C{i}",
            label=f"correct, pos {position}",
        )
        cos_ax.plot(
            group.layer,
            group.cos_incorrect,
            marker="x",
            linestyle="--",
            color=f"C{i}",
            label=f"incorrect, pos {position}",
        )
    acc_ax.axhline(
        table.baseline_acc.iloc[0],
        color="gray",
        linestyle=":",
        label=f"majority baseline ({table.baseline_acc.iloc[0]:.2f})",
    )
    acc_ax.set_ylim(0, 1.05)
    if note:
        acc_ax.text(
            0.5,
            0.5,
            note.replace(": ", ":\n", 1),
            transform=acc_ax.transAxes,
            ha="center",
            va="center",
            wrap=True,
        )
    acc_ax.set_ylabel(
        f"cross-validated accuracy ({table.folds.max()}-fold)"
        if table.folds.max()
        else "accuracy (probe not run)"
    )
    acc_ax.set_title("Linear probe predicting correctness")
    cos_ax.set_ylabel("mean cosine similarity to the task vector")
    cos_ax.set_title("Alignment with the task vector")
    for ax in (acc_ax, cos_ax):
        layer_ticks(ax, table.layer.tolist())
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
        plain_numbers(ax)
        legend_outside(ax, below=True)
    n, n_correct = int(table.n.iloc[0]), int(table.n_correct.iloc[0])
    fig.suptitle(
        f"{label}: {n} samples joined with predictions ({n_correct} correct, {n - n_correct} incorrect; "
        f"{join['session_only']} without a prediction)"
    )
    return save_figure(fig, path)
