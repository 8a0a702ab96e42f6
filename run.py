"""Seed-compatible evaluation entry point: `python run.py --config PROMPT_CONFIG` (same as `taskvec evaluate`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from taskvec.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["evaluate", *sys.argv[1:]]))
