"""Shared figure plumbing: short session labels, figures without pyplot, saving PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from taskvec.session import Session

DPI = 120


def session_labels(sessions: Sequence[Session]) -> list[str]:
    """Short, unique labels: the name stem before `_{model_short}_task_vector_`, else the full name; numbered stems if repeated."""
    stems = [s.name.split("_task_vector_")[0].removesuffix(f"_{s.metadata.get('model_short', '')}") for s in sessions]
    for labels in (stems, [s.name for s in sessions]):
        if len(set(labels)) == len(labels):
            return labels
    return [f"{stem} #{i + 1}" for i, stem in enumerate(stems)]


def new_figure(width: float, height: float) -> Figure:
    """A figure that needs no GUI backend (Agg renders it), so plotting works headless and in threads."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
