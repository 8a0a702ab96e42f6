"""compare_separation.png: per layer, the measures that separate strategies beside the raw cosine."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pandas as pd

from taskvec.analysis.plotting import layer_ticks, new_figure, save_figure

PANELS = (
    ("cos_means", "raw cosine of task vectors", (None, 1.01)),
    ("samples_cos_centered", "centred cosine: a's samples to b's task vector", (-1.02, 1.02)),
    ("distance_spread", "distance of task vectors / within-session spread", (0, None)),
    ("cka", "linear CKA (same samples)", (-0.02, 1.02)),
    ("probe_auc", "strategy probe: cross-validated AUC", (0.4, 1.02)),
)


def plot_separation(table: pd.DataFrame, labels: list[str], path: Path) -> Path:
    """One panel per measure against layer; colour = pair (a < b), line style = position; 95 % bootstrap
    bands on the cosines, fold spread on the probe."""
    fig = new_figure(15, 8.5)
    grid = fig.subplots(2, 3)
    axes, legend_ax = list(grid.flat[: len(PANELS)]), grid.flat[-1]
    styles = dict(zip(table.position.unique(), ["-", "--", ":", "-."] * len(table)))
    for color, (a, b) in enumerate(combinations(labels, 2)):
        pair = table[(table.session_a == a) & (table.session_b == b)]
        for position, group in pair.groupby("position", sort=False):
            for ax, (column, _, _) in zip(axes, PANELS):
                ax.plot(
                    group.layer,
                    group[column],
                    marker="o",
                    markersize=3,
                    color=f"C{color}",
                    linestyle=styles[position],
                    label=f"{a} vs {b}, pos {position}",
                )
                if f"{column}_lo" in group:
                    ax.fill_between(
                        group.layer,
                        group[f"{column}_lo"],
                        group[f"{column}_hi"],
                        color=f"C{color}",
                        alpha=0.15,
                    )
                if column == "probe_auc":
                    ax.fill_between(
                        group.layer,
                        group.probe_auc - group.probe_auc_std,
                        group.probe_auc + group.probe_auc_std,
                        color=f"C{color}",
                        alpha=0.15,
                    )
    for ax, (_, title, limits) in zip(axes, PANELS):
        layer_ticks(ax, table.layer.tolist())
        ax.set_ylim(*limits)
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    axes[2].axhline(0, color="black", linewidth=0.6)
    axes[4].axhline(0.5, color="black", linewidth=0.6)
    handles, names = axes[0].get_legend_handles_labels()
    legend_ax.axis("off")
    legend_ax.legend(handles, names, loc="center", fontsize="small", title="pair, position")
    fig.suptitle(
        "What separates the sessions, per layer\n"
        "(shaded: 95 % bootstrap interval over samples; probe: spread over folds)"
    )
    return save_figure(fig, path)
