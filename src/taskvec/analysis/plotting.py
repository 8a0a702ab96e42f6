"""Shared figure plumbing: short session labels, figures without pyplot, saving PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from taskvec.session.reader import Session

DPI = 120


def session_labels(sessions: Sequence[Session]) -> list[str]:
    """Short, unique labels: the name stem before `_{model_short}_task_vector_`; stems that
    repeat get their run's time (`cot_5shot_train@031502`), and numbers if that still repeats."""
    stems = [
        s.name.split("_task_vector_")[0].removesuffix(f"_{s.info.model_short or ''}")
        for s in sessions
    ]
    if len(set(stems)) == len(stems):
        return stems
    timed = [
        f"{stem}@{s.name.rsplit('_task_vector_', 1)[-1].split('_', 1)[-1]}"
        for stem, s in zip(stems, sessions)
    ]
    if len(set(timed)) == len(timed):
        return timed
    return [f"{stem} #{i + 1}" for i, stem in enumerate(stems)]


def new_figure(width: float, height: float) -> Figure:
    """A figure that needs no GUI backend (Agg renders it), so plotting works headless and in threads."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def legend_outside(ax: Axes, below: bool = False, **kwargs: object) -> None:
    """A legend beside (or below) the axes, never over the data; constrained layout makes room for it."""
    if below:
        ax.legend(
            loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, fontsize="small", **kwargs
        )
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", **kwargs)


def plain_numbers(ax: Axes) -> None:
    """Tick labels as plain numbers: no offset notation (`1e-12+1`) when values barely differ."""
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")


def layer_ticks(ax: Axes, layers: Sequence[int]) -> None:
    """A tick at every layer when they are spread out, else integer ticks matplotlib spaces
    (labels never collide); the axis spans the layers even where every value is NaN (a probe that
    could not run)."""
    ordered = sorted(set(layers))
    pad = max(0.5, 0.05 * (ordered[-1] - ordered[0]))
    ax.set_xlim(ordered[0] - pad, ordered[-1] + pad)
    gaps = [b - a for a, b in zip(ordered, ordered[1:])]
    if not gaps or min(gaps) * 15 >= ordered[-1] - ordered[0]:
        ax.set_xticks(ordered)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
