"""Analyses of sessions; each returns its pandas table in a typed result (`results`) and writes
its PNG plots (and a CSV) to a folder."""

from taskvec.analysis.compare import compare
from taskvec.analysis.correlate import correlate
from taskvec.analysis.project import project
from taskvec.analysis.results import (
    AnalysisResult,
    CompareResult,
    CorrelateResult,
    LensResult,
    ProjectResult,
)

__all__ = [
    "AnalysisResult",
    "CompareResult",
    "CorrelateResult",
    "LensResult",
    "ProjectResult",
    "compare",
    "correlate",
    "project",
]
