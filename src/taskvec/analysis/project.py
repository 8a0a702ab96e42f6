"""Where do the per-sample vectors of several sessions lie relative to each other? A 2-D PCA view."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from sklearn.decomposition import PCA

from taskvec.analysis.plotting import legend_outside, new_figure, save_figure, session_labels
from taskvec.analysis.results import ProjectResult
from taskvec.errors import TaskvecError
from taskvec.positions import VectorKey, check_position
from taskvec.session.reader import Session


def project_key(sessions: Sequence[Session], layer: int, position: str | None) -> str:
    """The key at `layer` (negative counts from the end of the model) and `position` (default:
    the first session's first)."""
    first = sessions[0]
    if layer < 0:
        if first.info.n_model_layers is None:
            raise TaskvecError(
                f"session '{first.name}' does not record its depth; give a non-negative layer"
            )
        layer += first.info.n_model_layers
    position = position if position is not None else first.positions[0]
    key = str(VectorKey(layer, check_position(position)))
    for s in sessions:
        if key not in s.keys:
            raise TaskvecError(
                f"session '{s.name}' has no vectors at layer {layer}, position {position}; "
                f"it has layers {s.layers} and positions {s.positions}"
            )
    return key


def project(
    sessions: Sequence[Session],
    layer: int,
    position: str | None = None,
    out: Path | None = None,
    correct: Sequence[dict[str, bool] | None] | None = None,
) -> ProjectResult:
    """PCA of all sessions' per-sample vectors at one layer and position, fitted on them together.

    Returns one row per sample and one per session mean (kind `mean`): session, sample_id, kind,
    pc1, pc2, and `correct` (True/False, None without a prediction) when `correct` gives each
    session's `sample_id -> correct` (None for a session without predictions); the plot then has a
    second panel coloured by correctness. Writes `project_layer_{L}_pos_{P}.png` (and .csv) to
    `out` (None: writes nothing). The result also holds the components' explained variance ratio.
    """
    key = project_key(sessions, layer, position)
    labels = session_labels(sessions)
    vectors = [s.vectors(key) for s in sessions]
    if len({v.shape[1] for v in vectors}) > 1:
        widths = {s.name: v.shape[1] for s, v in zip(sessions, vectors)}
        raise TaskvecError(
            f"the sessions have different hidden sizes ({widths}); project sessions of one model together"
        )
    stacked = torch.cat(vectors).double().numpy()
    if len(stacked) < 2:
        raise TaskvecError(
            f"PCA needs at least two samples; the sessions have {len(stacked)} at {key}"
        )
    pca = PCA(n_components=2).fit(stacked)
    frames = []
    for s, label, vecs in zip(sessions, labels, vectors):
        coords = pca.transform(vecs.double().numpy())
        mean = pca.transform(s.mean(key).double().numpy()[None])
        frames.append(
            pd.DataFrame(
                {
                    "session": label,
                    "sample_id": s.sample_ids,
                    "kind": "sample",
                    "pc1": coords[:, 0],
                    "pc2": coords[:, 1],
                }
            )
        )
        frames.append(
            pd.DataFrame(
                {
                    "session": label,
                    "sample_id": None,
                    "kind": "mean",
                    "pc1": mean[:, 0],
                    "pc2": mean[:, 1],
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    if correct is not None and any(c for c in correct):
        by_session = dict(zip(labels, correct))
        table["correct"] = [
            (by_session[s] or {}).get(i) if k == "sample" else None
            for s, i, k in zip(table.session, table.sample_id, table.kind)
        ]
    stem = f"project_{key}"
    ratio = tuple(pca.explained_variance_ratio_.tolist())
    if out is None:
        return ProjectResult(table=table, explained_variance_ratio=ratio)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{stem}.csv", index=False)
    plot = _plot(table, labels, pca.explained_variance_ratio_, key, out / f"{stem}.png")
    return ProjectResult(
        table=table, csv=out / f"{stem}.csv", plots=(plot,), explained_variance_ratio=ratio
    )


def _plot(table: pd.DataFrame, labels: list[str], ratio: np.ndarray, key: str, path: Path) -> Path:
    joined = "correct" in table
    fig = new_figure(17 if joined else 9.5, 6)
    ax, *rest = fig.subplots(1, 2 if joined else 1, squeeze=False)[0]
    for i, label in enumerate(labels):
        rows = table[table.session == label]
        samples, mean = rows[rows.kind == "sample"], rows[rows.kind == "mean"]
        ax.scatter(
            samples.pc1,
            samples.pc2,
            s=14,
            alpha=0.6,
            color=f"C{i}",
            label=f"{label} (n={len(samples)})",
        )
        ax.scatter(
            mean.pc1,
            mean.pc2,
            s=220,
            marker="*",
            color=f"C{i}",
            edgecolors="black",
            linewidths=1.0,
            label=f"{label} task vector (mean)",
            zorder=3,
        )
    parsed = VectorKey.parse(key)
    ax.set_title(f"PCA of per-sample vectors at layer {parsed.layer}, position {parsed.position}")
    if rest:
        _correctness_panel(rest[0], table, labels)
    for a in [ax, *rest]:
        a.set_xlabel(f"PC1 ({ratio[0]:.1%} of variance)")
        a.set_ylabel(f"PC2 ({ratio[1]:.1%} of variance)")
        a.grid(alpha=0.3)
        legend_outside(a, below=joined)
    return save_figure(fig, path)


MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def _correctness_panel(ax: Axes, table: pd.DataFrame, labels: list[str]) -> None:
    """The same points coloured by whether the model answered right (marker = session)."""
    samples = table[table.kind == "sample"]
    colours = {True: "tab:green", False: "tab:red", None: "lightgray"}
    names = {True: "correct", False: "incorrect", None: "no prediction"}
    state = samples.correct.map(lambda c: None if c is None or c != c else bool(c))
    for i, label in enumerate(labels):
        for value in (True, False, None):
            rows = samples[(samples.session == label) & (state.map(lambda c, v=value: c is v))]
            if len(rows):
                ax.scatter(
                    rows.pc1,
                    rows.pc2,
                    s=16,
                    alpha=0.7,
                    marker=MARKERS[i % len(MARKERS)],
                    color=colours[value],
                    label=f"{label}: {names[value]} ({len(rows)})",
                )
    ax.set_title("The same points by correctness (marker = session)")
