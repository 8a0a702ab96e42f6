"""taskvec: extract and study task vectors (hidden states at chosen layers and positions)."""

__version__ = "0.1.0"

from taskvec.errors import TaskvecError  # noqa: E402
from taskvec.extract import extract, prepare, run_extraction  # noqa: E402

__all__ = ["TaskvecError", "__version__", "extract", "prepare", "run_extraction"]
