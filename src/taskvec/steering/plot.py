"""steering.png: accuracy against scale, one line per layer (its random control dashed), the
baseline drawn; the evaluation's parse on the left, the prefix rule on the right. A single scale
(replace, or one scale swept) is drawn against the layer instead."""

from __future__ import annotations

from pathlib import Path

from matplotlib import colormaps
from matplotlib.ticker import MaxNLocator

from taskvec.analysis import plotting
from taskvec.steering.schema import ConditionScores, SteeringResult
from taskvec.steering.summary import short_expression


def _series(result: SteeringResult, by_layer: bool) -> dict[tuple[int, str], list[ConditionScores]]:
    """Conditions grouped into lines: per (layer, control), or (by_layer) one line per control."""
    lines: dict[tuple[int, str], list[ConditionScores]] = {}
    for c in result.conditions:
        lines.setdefault((-1 if by_layer else c.layer, c.control), []).append(c)
    return lines


def plot_steering(result: SteeringResult, path: Path) -> Path:
    """Plot `result` to `path`."""
    by_layer = len({c.scale for c in result.conditions}) == 1
    fig = plotting.new_figure(12.0, 4.8)
    axes = fig.subplots(1, 2, sharey=True)
    layers = sorted({c.layer for c in result.conditions})
    colours = dict(
        zip(layers, colormaps["viridis"]([i / max(len(layers), 1) for i in range(len(layers))]))
    )
    for ax, key, label in zip(
        axes,
        ("accuracy", "accuracy_prefix"),
        ("accuracy (the evaluation's parse)", "accuracy_prefix (begins with the gold answer)"),
    ):
        for (layer, control), points in _series(result, by_layer).items():
            xs = [p.layer if by_layer else p.scale for p in points]
            colour = "black" if by_layer else colours[layer]
            name = ("steered" if by_layer else f"layer {layer}") + (
                " random" if control == "random" else ""
            )
            ls = "--" if control == "random" else "-"
            ax.plot(
                xs,
                [getattr(p, key) for p in points],
                ls,
                marker="o",
                ms=4,
                color=colour,
                label=name,
                alpha=0.5 if control == "random" else 1.0,
            )
        ax.axhline(
            getattr(result.baseline, key),
            color="tab:red",
            ls=":",
            lw=1.5,
            label="baseline (unsteered)",
        )
        ax.set_xlabel("steered layer" if by_layer else "scale")
        if by_layer:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{label}; baseline {getattr(result.baseline, key):.2f}", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"accuracy over {result.n_prompts} prompts")
    cfg = result.config
    tag = f" [{cfg['tag']}]" if cfg.get("tag") else ""
    expression = short_expression(result.vector.expression, result.model_short)
    model = result.model.rstrip("/").split("/")[-1]
    fig.suptitle(
        f"Steering {cfg['mode']} '{expression}' at {cfg['where']}, {model}{tag}\n"
        f"{result.prompt_type} {result.n_shot}-shot prompts, {result.split}",
        fontsize=10,
    )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="outside right upper")
    return plotting.save_figure(fig, path)
