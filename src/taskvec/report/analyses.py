"""The report parts that run analyses: compare and project per group of comparable sessions, correlate
where a session's predictions are known, and the logit lens of each session."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from taskvec.analysis import compare, correlate, project
from taskvec.analysis.compare_summary import compare_summary
from taskvec.analysis.correlate import check_same_prompts, read_correctness
from taskvec.analysis.plotting import session_labels
from taskvec.errors import TaskvecError
from taskvec.report.html import Figure, Section
from taskvec.report.sections import command, session_args
from taskvec.session.reader import Session


def groups(sessions: Sequence[Session]) -> dict[str, list[Session]]:
    """Sessions that can be compared: same model, data and split (two or more, sharing a key)."""
    found: dict[str, list[Session]] = {}
    for s in sessions:
        found.setdefault(f"{s.info.model_short}, {s.info.data_name}, {s.info.split}", []).append(s)
    return {
        name: members
        for name, members in found.items()
        if len(members) >= 2 and set.intersection(*(set(m.keys) for m in members))
    }


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")[:60]


def predictions_for(session: Session, evaluations: Sequence[Path]) -> Path | None:
    """The results directory made from this session's prompts: its one-pass evaluation, else the first
    given one that passes correlate's same-run check and shares sample ids."""
    recorded = session.info.evaluation_results
    candidates = ([Path(recorded)] if recorded and Path(recorded).is_dir() else []) + list(
        evaluations
    )
    for folder in candidates:
        try:
            check_same_prompts(session, folder)
            if set(read_correctness(folder)) & set(session.sample_ids):
                return folder
        except TaskvecError:
            continue
    return None


def compare_part(
    section: Section, name: str, members: list[Session], figures: Path
) -> pd.DataFrame:
    out = figures / f"compare_{_slug(name)}"
    result = compare(members, out)
    redo = command("taskvec", "compare", *session_args(members), "--out", out)
    reads = session_args(members)
    section.text(f"{name}: {', '.join(session_labels(members))}")
    section.code(compare_summary(result.table, len(members)), wide=True)
    titles = {
        "compare_similarity.png": "Cosine of task vectors by layer",
        "compare_separation.png": "What separates the strategies, by layer",
        "compare_heatmap.png": "Pairwise cosine heatmaps",
        "compare_per_sample.png": "Per-sample cosine to each task vector",
    }
    for path in result.plots:
        section.figure(Figure(path, f"{titles[path.name]} ({name})", redo, reads))
    return result.table


def best_layer(table: pd.DataFrame) -> tuple[int, str]:
    """The layer and position where the task vectors differ most (lowest mean cosine over the pairs)."""
    mean = table.groupby(["layer", "position"], sort=False).cos_means.mean()
    layer, position = mean.idxmin()
    return int(layer), str(position)


def project_part(
    section: Section,
    name: str,
    members: list[Session],
    table: pd.DataFrame,
    evaluations: Sequence[Path],
    figures: Path,
) -> None:
    layer, position = best_layer(table)
    results = [predictions_for(s, evaluations) for s in members]
    correct = [read_correctness(r) if r else None for r in results] if any(results) else None
    out = figures / f"project_{_slug(name)}"
    projected = project(members, layer, position, out, correct)
    given = sorted({str(r) for r in results if r})
    redo = command(
        "taskvec",
        "project",
        *session_args(members),
        "--layer",
        layer,
        "--position",
        position,
        "--out",
        out,
        *(["--results", *given] if given else []),
    )
    caption = (
        "At the layer and position where the task vectors differ most (lowest cosine): "
        f"{layer}, {position}."
    )
    for path in projected.plots:
        section.figure(
            Figure(
                path,
                f"PCA of per-sample vectors ({name})",
                redo,
                session_args(members) + given,
                caption,
            )
        )


def correlate_part(
    section: Section, session: Session, results: Path, figures: Path, permutations: int
) -> None:
    label = session_labels([session])[0]
    out = figures / f"correlate_{_slug(label)}_{_slug(session.name[-15:])}"
    result = correlate(session, results, out, permutations=permutations)
    table = result.table
    redo = command(
        "taskvec",
        "correlate",
        session.task_vector_dir,
        results,
        "--out",
        out,
        "--permutations",
        permutations,
    )
    beats = int((table.verdict == "beats controls").sum())
    verdict = (
        f"{beats} of {len(table)} layer/position probes beat their controls"
        if beats
        else (f"no layer/position probe beats its controls ({len(table)} tested)")
    )
    if result.note:  # one class: nothing to probe, so no table or figure
        section.text(f"{label} with {results.name}: {result.note}.", "note")
        return
    section.text(
        f"{label} with {results.name}: {verdict}.", "verdict-yes" if beats else "verdict-no"
    )
    cols = [
        "layer",
        "position",
        "n_correct",
        "n_incorrect",
        "auc",
        "auc_std",
        "shuffled_auc_q95",
        "p_value",
    ]
    cols += [c for c in ("surface_auc", "kind_auc") if c in table] + ["verdict"]
    section.table(table[cols])
    for path in result.plots:
        section.figure(
            Figure(
                path,
                f"Probe for correctness with controls ({label})",
                redo,
                [str(session.task_vector_dir), str(results / "predictions.jsonl")],
            )
        )
    by_kind = result.by_kind
    if len(by_kind):
        first = by_kind[by_kind.key == by_kind.key.iloc[0]].drop(
            columns=["key", "layer", "position", "auc_within_kind"]
        )
        section.table(first, "accuracy per question kind")


def lens_part(section: Section, session: Session, figures: Path, top: int) -> None:
    from taskvec.analysis.lens import lens

    label = session_labels([session])[0]
    out = figures / f"lens_{_slug(label)}_{_slug(session.name[-15:])}"
    result = lens(session, out, top=top)
    redo = command("taskvec", "lens", session.task_vector_dir, "--top", top, "--out", out)
    reads = [
        str(session.task_vector_dir),
        f"the final norm and unembedding of {session.info.model}",
    ]
    gold = result.gold
    if len(gold):
        best = gold.loc[gold.median_rank.idxmin()]
        section.text(
            f"{label}: the gold first answer token ranks best at layer {best.layer}, "
            f"position {best.position} "
            f"(median rank {best.median_rank:g}, top-1 for {best.top1:.0%} of {int(best.n)} samples)."
        )
    elif result.note:
        section.text(f"{label}: {result.note}", "note")
    for position, group in result.table.groupby("position", sort=False):
        cells = group.assign(cell=group.token + " " + group.prob.map(lambda p: f"{p:.2f}"))
        grid = cells.pivot(index="layer", columns="rank", values="cell").reset_index()
        grid.columns = ["layer", *[f"top {r}" for r in grid.columns[1:]]]
        section.table(
            grid,
            f"{label}: top tokens (probability) of the task vector at position {position}; "
            f"made by {redo}",
        )
    for path in result.plots:
        if path.name == "lens_gold_rank.png":
            section.figure(Figure(path, f"Gold answer rank by layer ({label})", redo, reads))
