"""correlate.png: probe AUC by layer inside its control band, accuracy against the majority baseline,
and the cosine to the task vector of correct and incorrect samples."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes

from taskvec.analysis.plotting import (
    layer_ticks,
    legend_outside,
    new_figure,
    plain_numbers,
    save_figure,
)


def _auc_panel(ax: Axes, table: pd.DataFrame) -> None:
    """AUC per position with fold spread; shaded: the shuffled-label 5-95 % band; filled markers
    beat their controls."""
    for i, (position, group) in enumerate(table.groupby("position", sort=False)):
        color = f"C{i}"
        ax.fill_between(
            group.layer,
            group.shuffled_auc_q05,
            group.shuffled_auc_q95,
            color=color,
            alpha=0.15,
            label=f"shuffled labels 5-95 %, pos {position}",
        )
        ax.errorbar(
            group.layer,
            group.auc,
            yerr=group.auc_std,
            color=color,
            capsize=3,
            label=f"probe AUC, pos {position}",
        )
        beats = group[group.verdict == "beats controls"]
        ax.scatter(beats.layer, beats.auc, color=color, zorder=3, s=36)
        rest = group[group.verdict != "beats controls"]
        ax.scatter(rest.layer, rest.auc, facecolors="white", edgecolors=color, zorder=3, s=36)
    for name, style in (("surface", "--"), ("kind", "-.")):
        column = f"{name}_auc"
        if column in table and table[column].notna().any():
            value = float(table[column].iloc[0])
            ax.axhline(
                value, color="gray", linestyle=style, label=f"{name} baseline AUC ({value:.2f})"
            )
    ax.axhline(0.5, color="black", linewidth=0.6)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("cross-validated ROC AUC (filled: beats controls)")
    ax.set_title("Probe for correctness, with controls")


def _accuracy_panel(ax: Axes, table: pd.DataFrame) -> None:
    for i, (position, group) in enumerate(table.groupby("position", sort=False)):
        ax.errorbar(
            group.layer,
            group.probe_acc,
            yerr=group.probe_acc_std,
            marker="o",
            capsize=3,
            color=f"C{i}",
            label=f"probe, pos {position}",
        )
    base = float(table.baseline_acc.iloc[0])
    ax.axhline(base, color="gray", linestyle=":", label=f"majority baseline ({base:.2f})")
    ax.set_ylim(0, 1.05)
    folds = int(table.folds.max())
    ax.set_ylabel(
        f"cross-validated accuracy ({folds}-fold)" if folds else "accuracy (probe not run)"
    )
    ax.set_title("Probe accuracy")


def _cosine_panel(ax: Axes, table: pd.DataFrame) -> None:
    for i, (position, group) in enumerate(table.groupby("position", sort=False)):
        ax.plot(
            group.layer,
            group.cos_correct,
            marker="o",
            color=f"C{i}",
            label=f"correct, pos {position}",
        )
        ax.plot(
            group.layer,
            group.cos_incorrect,
            marker="x",
            linestyle="--",
            color=f"C{i}",
            label=f"incorrect, pos {position}",
        )
    ax.set_ylabel("mean cosine similarity to the task vector")
    ax.set_title("Alignment with the task vector")


def plot_correlate(
    table: pd.DataFrame, label: str, join: dict[str, int], note: str, forced: str, path: Path
) -> Path:
    fig = new_figure(17, 6.4)
    auc_ax, acc_ax, cos_ax = fig.subplots(1, 3)
    _auc_panel(auc_ax, table)
    _accuracy_panel(acc_ax, table)
    _cosine_panel(cos_ax, table)
    if note:
        for ax in (auc_ax, acc_ax):
            ax.text(
                0.5, 0.5, textwrap.fill(note, 40), transform=ax.transAxes, ha="center", va="center"
            )
    for ax in (auc_ax, acc_ax, cos_ax):
        layer_ticks(ax, table.layer.tolist())
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
        plain_numbers(ax)
        legend_outside(ax, below=True)
    n, n_correct = int(table.n.iloc[0]), int(table.n_correct.iloc[0])
    beats = int((table.verdict == "beats controls").sum())
    title = (
        f"{label}: {n} samples joined with predictions ({n_correct} correct, {n - n_correct} incorrect; "
        f"{join['session_only']} without a prediction); {beats} of {len(table)} layer/position probes beat "
        f"their controls ({int(table.permutations.max())} label shuffles)"
    )
    if forced:
        title = (
            textwrap.fill(forced.upper() if forced.startswith("labels") else forced, 150)
            + "\n"
            + title
        )
    fig.suptitle(title, color="firebrick" if forced.startswith("labels") else "black")
    return save_figure(fig, path)
