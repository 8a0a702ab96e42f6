"""The lens figures: a token table a person can read, and the gold-rank curve by layer."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from taskvec.analysis.plotting import layer_ticks, legend_outside, new_figure, save_figure

MAX_TOKEN_CHARS = 14


def _cell(token: str, prob: float) -> str:
    short = token if len(token) <= MAX_TOKEN_CHARS else token[: MAX_TOKEN_CHARS - 1] + "\u2026"
    return f"{short}\n{prob:.2f}"


def plot_tokens(table: pd.DataFrame, title: str, path: Path) -> Path:
    """One table per position: a row per layer, the top tokens left to right with their probability."""
    positions = list(dict.fromkeys(table.position))
    top = int(table["rank"].max())
    layers_per = [table[table.position == p].layer.nunique() for p in positions]
    fig = new_figure(1.0 + 1.05 * top, 0.9 + sum(0.42 * n + 0.55 for n in layers_per))
    axes = fig.subplots(len(positions), 1, squeeze=False, height_ratios=[n + 1 for n in layers_per])
    for ax, position in zip(axes[:, 0], positions):
        sub = table[table.position == position].sort_values(["layer", "rank"])
        layers = list(dict.fromkeys(sub.layer))
        cells = [
            [_cell(r.token, r.prob) for r in sub[sub.layer == layer].itertuples()]
            for layer in layers
        ]
        ax.axis("off")
        grid = ax.table(
            cellText=cells,
            rowLabels=[f"layer {layer}" for layer in layers],
            colLabels=[f"top {i + 1}" for i in range(top)],
            loc="center",
            cellLoc="center",
        )
        grid.auto_set_font_size(False)
        grid.set_fontsize(7.5)
        grid.scale(1.0, 2.0)
        ax.set_title(f"position {position}", fontsize="medium")
    fig.suptitle(f"Logit lens of {title}: top tokens (probability) per layer")
    return save_figure(fig, path)


def plot_gold(gold: pd.DataFrame, label: str, vocab: int, path: Path) -> Path:
    """Left: median rank of the gold first token per layer (quartile band, log scale); right: its mean
    probability and the share of samples where it is the top token, on a log scale down to the smallest
    value (a small model's gold probabilities are 1e-10 to 1e-3 before its last blocks: on a 0-1 axis every
    point sat on the floor); a share of 0 is left undrawn."""
    fig = new_figure(12, 4.8)
    rank_ax, prob_ax = fig.subplots(1, 2)
    for i, (position, group) in enumerate(gold.groupby("position", sort=False)):
        color = f"C{i}"
        rank_ax.plot(
            group.layer, group.median_rank, marker="o", color=color, label=f"median, pos {position}"
        )
        rank_ax.fill_between(group.layer, group.q25_rank, group.q75_rank, color=color, alpha=0.2)
        rank_ax.plot(
            group.layer, group.mean_rank, linestyle="--", color=color, label=f"mean, pos {position}"
        )
        prob_ax.plot(
            group.layer,
            group.mean_prob.where(group.mean_prob > 0),
            marker="o",
            color=color,
            label=f"mean probability, pos {position}",
        )
        prob_ax.plot(
            group.layer,
            group.top1.where(group.top1 > 0),
            marker="x",
            linestyle=":",
            color=color,
            label=f"share ranked 1st, pos {position}",
        )
    rank_ax.set_yscale("log")
    rank_ax.set_ylim(0.8, vocab * 1.2)
    rank_ax.set_ylabel(f"rank of the gold first token (1 = top, of {vocab})")
    rank_ax.set_title("Gold answer's rank from each sample's own vector")
    shown = pd.concat([gold.mean_prob, gold.top1])
    positive = shown[shown > 0]
    prob_ax.set_yscale("log")
    prob_ax.set_ylim(float(positive.min()) / 3 if len(positive) else 1e-4, 2.0)
    prob_ax.set_ylabel("probability / share of samples (log; a 0 is not drawn)")
    prob_ax.set_title("Gold answer's probability")
    for ax in (rank_ax, prob_ax):
        layer_ticks(ax, gold.layer.tolist())
        ax.set_xlabel("layer (block output, through the final norm and unembedding)")
        ax.grid(alpha=0.3)
        legend_outside(ax, below=True)
    fig.suptitle(
        f"{label}: logit lens of per-sample vectors, {int(gold.n.iloc[0])} samples with gold answers"
    )
    return save_figure(fig, path)
