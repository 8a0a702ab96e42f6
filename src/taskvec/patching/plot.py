"""patching.png: dev accuracy per patched layer, one line per task, the mean in bold; the legend
outside the axes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure

from taskvec.analysis import plotting
from taskvec.patching.summary import layer_text
from taskvec.schemas.patching import PatchSummary


def plot_patching(
    summary: PatchSummary,
    path: Path,
    new_figure: Callable[[float, float], Figure] = plotting.new_figure,
    save_figure: Callable[[Figure, Path], Path] = plotting.save_figure,
) -> Path:
    """Plot `summary` (patching.json) to `path`; `new_figure` and `save_figure` make and write the figure."""
    per_task, dev, layers = summary.per_task, summary.dev, summary.dev.layers
    fig = new_figure(11.0, 5.0)
    ax = fig.add_subplot()
    colours = colormaps["tab20"](range(len(per_task)))
    for colour, t in zip(colours, per_task, strict=True):
        ax.plot(
            layers,
            [t.dev.task_vector[layer] for layer in layers],
            color=colour,
            lw=1.2,
            alpha=0.9,
            label=f"{t.task} (few {t.dev.few_shot or 0:.2f}, zero {t.dev.zero_shot:.2f})",
        )
    if len(per_task) > 1:
        ax.plot(
            layers,
            [dev.task_vector[layer] for layer in layers],
            color="black",
            lw=2.5,
            label="mean over tasks",
        )
    for name, value, colour, ls, lw in (
        ("zero-shot", dev.zero_shot, "tab:red", "--", 1),
        ("few-shot", dev.few_shot, "tab:green", ":", 2),
    ):
        if value is not None:
            ax.axhline(value, color=colour, ls=ls, lw=lw, label=f"{name}, mean {value:.2f}")
    best, test = summary.best_layer, summary.test
    if best is not None:  # a flat sweep has no best layer: nothing to star
        ax.plot(
            [best],
            [dev.task_vector[best]],
            marker="*",
            ms=14,
            color="black",
            ls="none",
            label=f"best mean layer {best} (test TV {test['task_vector_shared']:.2f})",
        )
    ax.set_xlabel(f"patched layer (output of decoder block; model has {summary.n_layers})")
    ax.set_ylabel("dev accuracy (greedy answer)")
    ax.set_ylim(-0.02, 1.02)
    mode = "replace" if summary.mode == "replace" else f"add x{summary.scale:g}"
    tag = summary.config.get("tag")
    ax.set_title(
        f"Task-vector patching ({mode}), {summary.model}{f' [{tag}]' if tag else ''}\n"
        f"{len(per_task)} task(s); best mean layer: {layer_text(best)}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
    return save_figure(fig, path)
