"""Seed-compatible entry point: `python task_vector_generation.py --config FILE` (same as `taskvec extract`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from taskvec.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["extract", *sys.argv[1:]]))
