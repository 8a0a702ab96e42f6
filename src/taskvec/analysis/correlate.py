"""Do a session's vectors say whether the model will answer correctly?

Per-sample vectors are joined to an evaluation's `predictions.jsonl` by sample id. For each
layer and position: a cross-validated linear probe for correctness (accuracy and ROC AUC with
their spread over folds) beside its controls (`analysis.probe`): the majority baseline, the
same probe on shuffled labels (permutation p-value), a surface probe on prompt and question
length only, and, where the data has question kinds, a probe on the kind alone; a verdict says
whether the vectors beat them. Also the mean cosine to the task vector of correct and incorrect
samples, and the probe's out-of-fold AUC within each question kind (correlate_by_kind.csv).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError

from taskvec.analysis.correlate_plot import plot_correlate
from taskvec.analysis.plotting import session_labels
from taskvec.analysis.probe import (
    ProbeScore,
    auc,
    cross_validate,
    permutation_p,
    shuffled_aucs,
    verdict,
)
from taskvec.analysis.results import CorrelateResult
from taskvec.analysis.samples import session_kinds, session_samples
from taskvec.errors import TaskvecError
from taskvec.model.identity import recorded_identity
from taskvec.positions import VectorKey
from taskvec.schemas.metrics import Metrics
from taskvec.session.reader import Session

PREDICTIONS_FILE = "predictions.jsonl"
PERMUTATIONS = 100


def read_correctness(results: Path) -> dict[str, bool]:
    """`sample_id -> correct` from `{results}/predictions.jsonl` (or `results` itself if it is a file)."""
    return {sid: bool(r["correct"]) for sid, r in read_predictions(results).items()}


def read_predictions(results: Path) -> dict[str, dict]:
    """`sample_id -> prediction row` from `{results}/predictions.jsonl`, each row checked for an id and a
    boolean `correct`."""
    path = results if results.is_file() else results / PREDICTIONS_FILE
    if not path.is_file():
        raise TaskvecError(
            f"no predictions file at '{path}'; pass the results directory an evaluation wrote (it "
            f"holds {PREDICTIONS_FILE})"
        )
    correct: dict[str, dict] = {}
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
        correct[sample_id] = record
    return correct


def _metrics(path: Path) -> Metrics:
    """A results folder's metrics.json (none: nothing recorded to compare)."""
    if not path.is_file():
        return Metrics()
    try:
        return Metrics.read(path)
    except ValidationError as exc:
        raise TaskvecError(
            f"{path} is not an evaluation's metrics ({exc.errors()[0]['msg']})"
        ) from None


def check_same_prompts(session: Session, results_dir: Path) -> None:
    """Refuse to join vectors and predictions made from different models, splits or prompts,
    naming the difference."""
    folder = results_dir.parent if results_dir.is_file() else results_dir
    metrics = _metrics(folder / "metrics.json")
    meta, recorded = session.info, metrics.model_fields_set
    problems = [
        f"{f}: session {getattr(meta, f)!r}, predictions {getattr(metrics, f)!r}"
        for f in ("split", "prompt_type", "n_shot")
        if f in recorded and getattr(metrics, f) != getattr(meta, f)
    ]
    ours, theirs = recorded_identity(session.metadata), recorded_identity(metrics.dump())
    if "model" in recorded and theirs != ours:
        problems.insert(
            0,
            f"model: session {meta.model!r} ({ours}), predictions {metrics.model!r} ({theirs})",
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


def match_correctness(
    sessions: Sequence[Session], results: Sequence[Path]
) -> list[dict[str, bool] | None]:
    """Each session's `sample_id -> correct` from the first results directory made from its prompts."""
    found: list[dict[str, bool] | None] = []
    for session in sessions:
        match = None
        for folder in results:
            correct = read_correctness(folder)
            try:
                check_same_prompts(session, folder)
            except TaskvecError:
                continue
            if set(correct) & set(session.sample_ids):
                match = correct
                break
        found.append(match)
    if not any(found):
        raise TaskvecError(
            f"project: none of the results directories ({', '.join(map(str, results))}) was made "
            "from the prompts of "
            "these sessions (same model, split and prompt text); pass the evaluation of one of them"
        )
    return found


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def _surface_features(session: Session, ids: list[str]) -> np.ndarray:
    """Prompt length in tokens and question length in characters (where the samples can be rebuilt)."""
    tokens = {row["sample_id"]: row.get("n_tokens", len(row["prompt"])) for row in session.prompts}
    samples, _ = session_samples(session)
    return np.array(
        [
            [float(tokens.get(i, 0)), float(len(samples[i].question)) if i in samples else 0.0]
            for i in ids
        ]
    )


def _one_hot(kinds: list[str]) -> np.ndarray:
    names = sorted(set(kinds))
    return np.array([[float(k == name) for name in names] for k in kinds])


def _baselines(
    session: Session, ids: list[str], y: np.ndarray, kinds: list[str] | None
) -> dict[str, ProbeScore]:
    """The probes on other features than the vectors: `surface` (lengths), `kind` (where the
    data has kinds)."""
    out = {"surface": cross_validate(_surface_features(session, ids), y)}
    if kinds is not None:
        out["kind"] = cross_validate(_one_hot(kinds), y)
    return out


def _kinds_of(session: Session, predictions: dict[str, dict], ids: list[str]) -> list[str] | None:
    """Each joined sample's question kind (from the predictions, else rebuilt from the session), or None."""
    known = {sid: str(r["kind"]) for sid, r in predictions.items() if r.get("kind")}
    known = known or session_kinds(session)
    if not known or not all(i in known for i in ids):
        return None
    return [known[i] for i in ids]


def _by_kind(
    key: str, score: ProbeScore, y: np.ndarray, kinds: list[str]
) -> list[dict[str, object]]:
    """Per kind: counts, accuracy of the model, and the probe's out-of-fold AUC within the kind."""
    rows = []
    parsed = VectorKey.parse(key)
    for kind in sorted(set(kinds)):
        mask = np.array([k == kind for k in kinds])
        rows.append(
            {
                "key": key,
                "layer": parsed.layer,
                "position": str(parsed.position),
                "kind": kind,
                "n": int(mask.sum()),
                "n_correct": int(y[mask].sum()),
                "accuracy": float(y[mask].mean()),
                "auc_within_kind": auc(y[mask], score.oof[mask]) if score.folds else math.nan,
            }
        )
    return rows


def _key_row(
    key: str,
    x: np.ndarray,
    y: np.ndarray,
    cos: np.ndarray,
    baselines: dict[str, ProbeScore],
    permutations: int,
) -> tuple[dict[str, object], ProbeScore]:
    """One row of correlate.csv: the probe, its controls and the verdict, and the cosines."""
    parsed = VectorKey.parse(key)
    score = cross_validate(x, y)
    null = shuffled_aucs(x, y, permutations) if score.folds else np.array([])
    p = permutation_p(score.auc, null)
    q05, q95 = np.quantile(null, (0.05, 0.95)) if len(null) else (math.nan, math.nan)
    n_correct = int(y.sum())
    row = {
        "key": key,
        "layer": parsed.layer,
        "position": str(parsed.position),
        "n": len(y),
        "n_correct": n_correct,
        "n_incorrect": len(y) - n_correct,
        "baseline_acc": max(n_correct, len(y) - n_correct) / len(y),
        "probe_acc": score.accuracy,
        "probe_acc_std": score.accuracy_std,
        "auc": score.auc,
        "auc_std": score.auc_std,
        "folds": score.folds,
        "shuffled_auc_mean": float(null.mean()) if len(null) else math.nan,
        "shuffled_auc_q05": float(q05),
        "shuffled_auc_q95": float(q95),
        "permutations": len(null),
        "p_value": p,
        **{f"{name}_auc": b.auc for name, b in baselines.items()},
        "verdict": verdict(score.auc, p, float(q95), {n: b.auc for n, b in baselines.items()}),
        "cos_correct": _mean_or_nan(cos[y == 1]),
        "cos_incorrect": _mean_or_nan(cos[y == 0]),
    }
    return row, score


def _forced_mark(session: Session, results_dir: Path, force: bool) -> str:
    """With --force: what the same-run check found (joined anyway), or that it found nothing; else checks."""
    if not force:
        check_same_prompts(session, results_dir)
        return ""
    try:
        check_same_prompts(session, results_dir)
    except TaskvecError as exc:
        return "labels joined by --force: " + str(exc).split("; pair the session")[0]
    return "--force given (the same-run check found no difference)"


def correlate(
    session: Session,
    results_dir: Path,
    out: Path | None = None,
    force: bool = False,
    permutations: int = PERMUTATIONS,
) -> CorrelateResult:
    """One row per key: the probe for correctness, its controls and verdict, and cosine to the task vector.

    Vectors and predictions must come from the same model, split and prompts (`force` joins them anyway,
    and every output says so: the `forced` column, the result's `forced`, the plot's title). The result
    also holds the join counts (`matched`, `session_only`, `predictions_only`), a `note` when the probe
    cannot run, `by_kind` (a table, empty without kinds), and the written `csv` and `plots`; the CSVs and
    the plot go to `out` (None: writes nothing).
    """
    if permutations < 0:
        raise TaskvecError(f"correlate: --permutations must be 0 or more (got {permutations})")
    predictions = read_predictions(results_dir)
    forced = _forced_mark(session, results_dir, force)
    ids = session.sample_ids
    rows = [i for i, sample_id in enumerate(ids) if sample_id in predictions]
    join = {
        "matched": len(rows),
        "session_only": len(ids) - len(rows),
        "predictions_only": len(set(predictions) - set(ids)),
    }
    if not rows:
        raise TaskvecError(
            f"session '{session.name}' and the predictions in '{results_dir}' share no sample id "
            f"(session: {', '.join(ids[:3]) or 'no samples'}...; predictions: "
            f"{', '.join(list(predictions)[:3])}...); "
            "evaluate the split the session extracted (`taskvec evaluate --config PROMPT_CONFIG "
            f"--split {session.info.split}`)"
        )
    joined = [ids[i] for i in rows]
    y = np.array([bool(predictions[i]["correct"]) for i in joined], dtype=int)
    n_correct = int(y.sum())
    note = ""
    if min(n_correct, len(y) - n_correct) < 2:
        note = (
            f"{n_correct} of {len(y)} matched samples are correct: the probe needs at least two of "
            "each class, "
            "so probe accuracy is NaN"
        )
    kinds = _kinds_of(session, predictions, joined)
    baselines = _baselines(session, joined, y, kinds)
    table_rows, kind_rows = [], []
    for key in session.keys:
        vectors = session.vectors(key)[rows]
        cos = torch.nn.functional.cosine_similarity(
            vectors.double(), session.mean(key).double()[None], dim=1
        ).numpy()
        row, score = _key_row(key, vectors.double().numpy(), y, cos, baselines, permutations)
        table_rows.append(row | {"forced": forced})
        if kinds is not None:
            kind_rows += _by_kind(key, score, y, kinds)
    table = pd.DataFrame(table_rows)
    by_kind = pd.DataFrame(kind_rows)
    result = CorrelateResult(
        table=table,
        matched=join["matched"],
        session_only=join["session_only"],
        predictions_only=join["predictions_only"],
        note=note,
        forced=forced,
        by_kind=by_kind,
    )
    if out is None:
        return result
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "correlate.csv", index=False)
    if len(by_kind):
        by_kind.to_csv(out / "correlate_by_kind.csv", index=False)
    label = session_labels([session])[0]
    plot = plot_correlate(table, label, join, note, forced, out / "correlate.png")
    return replace(result, csv=out / "correlate.csv", plots=(plot,))
