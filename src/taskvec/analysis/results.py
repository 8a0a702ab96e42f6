"""What the analyses return: the table, the files written, and each analysis's own values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


# eq=False: comparing two results would compare DataFrames, whose truth value is ambiguous
@dataclass(frozen=True, kw_only=True, eq=False)
class AnalysisResult:
    """An analysis's table, its CSV and its plots (None and () when it was given no folder)."""

    table: pd.DataFrame
    csv: Path | None = None
    plots: tuple[Path, ...] = ()


@dataclass(frozen=True, kw_only=True, eq=False)
class CompareResult(AnalysisResult):
    """`compare`: one row per shared key and ordered session pair."""


@dataclass(frozen=True, kw_only=True, eq=False)
class ProjectResult(AnalysisResult):
    """`project`: pc1 and pc2 per sample and per session mean, and the share of variance of
    each component."""

    explained_variance_ratio: tuple[float, ...]


@dataclass(frozen=True, kw_only=True, eq=False)
class CorrelateResult(AnalysisResult):
    """`correlate`: one row per key; how the vectors joined the predictions, a `note` when the
    probe cannot run, `forced` (what --force joined anyway, else empty) and the per-kind table
    (empty without kinds)."""

    matched: int
    session_only: int
    predictions_only: int
    note: str
    forced: str
    by_kind: pd.DataFrame


@dataclass(frozen=True, kw_only=True, eq=False)
class LensResult(AnalysisResult):
    """`lens`: the top tokens per key; the gold-rank summary (empty, with a `note` saying why,
    without gold answers) and whether the output matrix was read through the token embedding."""

    gold: pd.DataFrame
    note: str
    tied: bool
