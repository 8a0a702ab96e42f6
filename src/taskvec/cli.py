"""Command line: parse arguments, call the library, turn TaskvecError into one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from taskvec.errors import TaskvecError


def _extract(args: argparse.Namespace) -> None:
    from taskvec.pipeline import extract

    paths = extract(Path(args.config), progress=not args.quiet)
    print(f"session: {paths.name}")
    print(f"task vectors: {paths.task_vector_dir}")
    print(f"per-sample vectors: {paths.raw_dir}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskvec", description="Extract and study task vectors.")
    sub = parser.add_subparsers(dest="command", required=True)
    ext = sub.add_parser("extract", help="run an extraction config and write a session")
    ext.add_argument("--config", required=True, help="extraction config YAML")
    ext.add_argument("--quiet", action="store_true", help="no progress bar")
    ext.set_defaults(func=_extract)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except TaskvecError as exc:
        print(f"taskvec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("taskvec: interrupted", file=sys.stderr)
        return 130
    return 0
