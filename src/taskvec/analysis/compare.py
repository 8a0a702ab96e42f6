"""How similar are the task vectors of two or more sessions, layer by layer and position by position?

Per key and pair: the cosine similarity of the sessions' mean vectors, and how the per-sample
vectors of one session align with the other session's mean (next to how they align with their
own mean, which says how tight the session itself is); then the measures that separate
strategies where the raw cosine cannot (`analysis.similarity`): centred cosines with bootstrap
intervals, distance in units of the within-session spread, linear CKA, a strategy probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from taskvec.analysis.compare_plot import plot_separation
from taskvec.analysis.plotting import (
    layer_ticks,
    legend_outside,
    new_figure,
    plain_numbers,
    save_figure,
    session_labels,
)
from taskvec.analysis.results import CompareResult
from taskvec.analysis.similarity import pair_measures
from taskvec.errors import TaskvecError
from taskvec.positions import VectorKey
from taskvec.session.reader import Session

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
HEATMAP_COLUMNS = 5  # layers per heatmap row; more would shrink the cells below their values


def common_keys(sessions: Sequence[Session]) -> list[str]:
    """Keys every session has, in the first session's order; an error names each session's keys
    if none is shared."""
    shared = set.intersection(*(set(s.keys) for s in sessions))
    if not shared:
        listing = "; ".join(f"{s.name}: {', '.join(s.keys)}" for s in sessions)
        raise TaskvecError(
            f"the sessions share no layer/position key, so there is nothing to compare ({listing})"
        )
    return [k for k in sessions[0].keys if k in shared]


def _cosine_to(vectors: torch.Tensor, mean: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(
        vectors.double(), mean.double()[None], dim=1
    ).numpy()


def compare(sessions: Sequence[Session], out: Path | None = None) -> CompareResult:
    """One row per shared key and ordered session pair (a, b); writes compare.csv and the plots
    to `out` (None: writes nothing) and returns the table with their paths.

    Columns: cos_means (cosine of the two mean vectors), the distribution of per-sample cosine of a's
    vectors to b's mean (samples_cos_mean, _std, q05..q95) and own_cos_mean (a's samples to a's own mean),
    and the columns of `similarity.pair_measures` (cos_centered, samples_cos_centered, distance_spread, cka,
    probe_auc, bootstrap bounds `_lo`/`_hi`).
    """
    if len(sessions) < 2:
        raise TaskvecError("compare needs at least two sessions")
    keys = common_keys(sessions)
    hidden = {s.name: s.mean(keys[0]).shape[0] for s in sessions}
    if len(set(hidden.values())) > 1:
        raise TaskvecError(
            f"the sessions have different hidden sizes ({hidden}); compare sessions of one model"
        )
    labels = session_labels(sessions)
    n = len(sessions)
    rows: list[dict[str, object]] = []
    dists: dict[tuple[str, int, int], np.ndarray] = {}
    for key in keys:
        parsed = VectorKey.parse(key)
        layer, position = parsed.layer, str(parsed.position)
        means = [s.mean(key) for s in sessions]
        arrays = [s.vectors(key).double().numpy() for s in sessions]
        ids = [s.sample_ids for s in sessions]
        for i, a in enumerate(sessions):
            vecs = a.vectors(key)
            for j in range(n):
                dists[key, i, j] = _cosine_to(vecs, means[j])
        for i, j in ((i, j) for i in range(n) for j in range(n) if i != j):
            d = dists[key, i, j]
            cos = torch.nn.functional.cosine_similarity(
                means[i].double(), means[j].double(), dim=0
            ).item()
            rows.append(
                {
                    "key": key,
                    "layer": layer,
                    "position": position,
                    "session_a": labels[i],
                    "session_b": labels[j],
                    "cos_means": cos,
                    "n_a": len(d),
                    "samples_cos_mean": d.mean(),
                    "samples_cos_std": d.std(ddof=1)
                    if len(d) > 1
                    else np.nan,  # a complete session has >= 1 sample
                    **{
                        f"q{round(p * 100):02d}": v
                        for p, v in zip(QUANTILES, np.quantile(d, QUANTILES))
                    },
                    "own_cos_mean": dists[key, i, i].mean(),
                    **pair_measures(arrays, ids, i, j),
                }
            )
    table = pd.DataFrame(rows)
    if out is None:
        return CompareResult(table=table)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "compare.csv", index=False)
    plots = [
        _plot_similarity(table, labels, out),
        _plot_per_sample(dists, keys, labels, out),
        plot_separation(table, labels, out / "compare_separation.png"),
    ]
    if n >= 3:
        plots.append(_plot_heatmaps(table, keys, labels, out))
    return CompareResult(table=table, csv=out / "compare.csv", plots=tuple(plots))


def _plot_similarity(table: pd.DataFrame, labels: list[str], out: Path) -> Path:
    """Line plot: cosine of the mean vectors against layer; colour = session pair, line style = position."""
    fig = new_figure(11, 4.5)
    ax = fig.subplots()
    styles = {p: s for p, s in zip(table.position.unique(), ["-", "--", ":", "-."] * len(table))}
    for color, (a, b) in enumerate(combinations(labels, 2)):
        pair = table[(table.session_a == a) & (table.session_b == b)]
        for position, group in pair.groupby("position", sort=False):
            ax.plot(
                group.layer,
                group.cos_means,
                marker="o",
                color=f"C{color}",
                linestyle=styles[position],
                label=f"{a} vs {b}, pos {position}",
            )
    layer_ticks(ax, table.layer.tolist())
    ax.set_xlabel("layer (decoder block output)")
    ax.set_ylabel("cosine similarity of mean vectors")
    ax.set_title("Task-vector similarity between sessions")
    ax.grid(alpha=0.3)
    plain_numbers(ax)
    legend_outside(ax)
    return save_figure(fig, out / "compare_similarity.png")


def _plot_per_sample(
    dists: dict[tuple[str, int, int], np.ndarray], keys: list[str], labels: list[str], out: Path
) -> Path:
    """Box plots per layer: one row per session (its samples), one box per mean they are compared with."""
    parsed = {(k.layer, str(k.position)): str(k) for k in map(VectorKey.parse, keys)}
    positions = list(dict.fromkeys(p for _, p in parsed))
    layers = list(dict.fromkeys(layer for layer, _ in parsed))
    n = len(labels)
    fig = new_figure(max(7.0, 1.0 + len(layers) * 0.35 * n) * len(positions), 3.2 * n)
    axes = fig.subplots(n, len(positions), squeeze=False, sharey=True)
    colors = [f"C{j}" for j in range(n)]
    width = 0.8 / n
    for i in range(n):
        for col, position in enumerate(positions):
            ax: Axes = axes[i][col]
            present = [
                (x, parsed[layer, position])
                for x, layer in enumerate(layers)
                if (layer, position) in parsed
            ]
            for j in range(n):
                data = [dists[key, i, j] for _, key in present]
                xs = [x - 0.4 + width * (j + 0.5) for x, _ in present]
                box = ax.boxplot(
                    data,
                    positions=xs,
                    widths=width * 0.9,
                    patch_artist=True,
                    showfliers=True,
                    flierprops={"markersize": 2},
                    medianprops={"color": "black"},
                )
                for patch in box["boxes"]:
                    patch.set_facecolor(colors[j])
                    patch.set_alpha(0.7)
            ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
            ax.set_title(f"samples of {labels[i]}, position {position}", fontsize="medium")
            ax.set_xlabel("layer")
            ax.grid(axis="y", alpha=0.3)
            if col == 0:
                ax.set_ylabel("cosine to mean vector")
                plain_numbers(ax)
    handles = [
        Patch(facecolor=colors[j], alpha=0.7, label=f"to mean of {labels[j]}") for j in range(n)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(n, 4))
    fig.suptitle("Per-sample cosine similarity to each session's mean vector")
    return save_figure(fig, out / "compare_per_sample.png")


def _pair_grid(table: pd.DataFrame, layer: int, position: str, labels: list[str]) -> np.ndarray:
    """The (n, n) cosine of mean vectors at one layer and position (1 on the diagonal; NaN if the
    key is missing)."""
    index = {label: i for i, label in enumerate(labels)}
    grid = np.eye(len(labels))
    sub = table[(table.layer == layer) & (table.position == position)]
    for row in sub.itertuples():
        grid[index[row.session_a], index[row.session_b]] = row.cos_means
    if sub.empty:
        grid[:] = np.nan
    return grid


def _plot_heatmaps(table: pd.DataFrame, keys: list[str], labels: list[str], out: Path) -> Path:
    """Small heatmaps of the pairwise cosine of mean vectors: a block of rows per position, at most
    `HEATMAP_COLUMNS` layers a row, the figure sized so cell values and session labels fit."""
    parsed = [VectorKey.parse(k) for k in keys]
    positions = list(dict.fromkeys(str(k.position) for k in parsed))
    layers = list(dict.fromkeys(k.layer for k in parsed))
    n, cols = len(labels), min(len(layers), HEATMAP_COLUMNS)
    per_position = -(-len(layers) // cols)
    label_in = 0.07 * max(map(len, labels))  # x-small text, inches
    cell = max(1.8, 0.6 * n)
    fig = new_figure(
        cell * cols + label_in + 1.5, cell * per_position * len(positions) + label_in + 0.8
    )
    axes = fig.subplots(per_position * len(positions), cols, squeeze=False)
    # the colour scale spans the data, never a single value
    lo = min(float(table.cos_means.min()), 0.99)
    image = None
    for r in range(len(positions)):  # a block's last row may have fewer layers than columns
        for unused in axes[(r + 1) * per_position - 1][len(layers) - (per_position - 1) * cols :]:
            unused.set_visible(False)
    for r, position in enumerate(positions):
        for k, layer in enumerate(layers):
            ax: Axes = axes[r * per_position + k // cols][k % cols]
            grid = _pair_grid(table, layer, position, labels)
            image = ax.imshow(grid, vmin=lo, vmax=1.0, cmap="viridis")
            for (y, x), v in np.ndenumerate(grid):
                ax.text(
                    x,
                    y,
                    f"{v:.3f}",
                    ha="center",
                    va="center",
                    fontsize="x-small",
                    color="white" if v < (lo + 1) / 2 else "black",
                )
            nothing_below = r == len(positions) - 1 and k + cols >= len(layers)
            ax.set_xticks(
                range(n),
                labels if nothing_below else [],
                rotation=45,
                ha="right",
                fontsize="x-small",
            )
            ax.set_yticks(range(n), labels if k % cols == 0 else [], fontsize="x-small")
            ax.set_title(f"layer {layer}, pos {position}", fontsize="small")
    assert image is not None  # at least one key, so at least one heatmap
    fig.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity of mean vectors")
    fig.suptitle("Pairwise task-vector similarity per layer and position")
    return save_figure(fig, out / "compare_heatmap.png")
