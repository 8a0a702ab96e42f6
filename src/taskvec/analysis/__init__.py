"""Analyses of sessions; each returns a pandas table and writes its PNG plots (and a CSV) to a folder."""

from taskvec.analysis.compare import compare
from taskvec.analysis.correlate import correlate
from taskvec.analysis.project import project

__all__ = ["compare", "correlate", "project"]
