"""Command line: parse arguments, call the library, turn TaskvecError into one line and exit 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from taskvec.errors import Interrupted, TaskvecError
from taskvec.evaluation.command import add_evaluate_command

if TYPE_CHECKING:
    from taskvec.analysis.results import AnalysisResult
    from taskvec.session.layout import SessionPaths
    from taskvec.session.reader import Session


def _extract(args: argparse.Namespace) -> None:
    from taskvec.extraction.precheck import check_extraction

    check_extraction(Path(args.config), args.resume)  # mistakes in about a second, before torch
    _quiet_loading(args)
    from taskvec.extraction.run import extract

    paths = extract(Path(args.config), progress=not args.quiet, resume=args.resume)
    print(f"session: {paths.name}")
    print(f"task vectors: {paths.task_vector_dir}")
    print(f"per-sample vectors: {paths.raw_dir}")
    if not args.quiet:
        _next_steps(paths)


def _next_steps(paths: SessionPaths) -> None:
    """What to do with the session just written: built from it and the sessions beside it."""
    import json

    from taskvec.session.hints import after_extract

    key = json.loads(paths.metadata.read_text())["keys"][0]
    task_vector_dir = paths.task_vector_dir
    steps = after_extract(paths, task_vector_dir.parent.parent)
    print("next steps (in a shell where `source .venv/bin/activate` has run):")
    print(f"  {steps[0]}")
    print(
        f"  python -c \"import taskvec; s = taskvec.load_session('{task_vector_dir}'); "
        f"print(s.mean('{key}').shape, s.vectors('{key}').shape)\""
    )
    for step in steps[1:]:
        print(f"  {step}")


def _quiet_loading(args: argparse.Namespace) -> None:
    """With --quiet, silence transformers' and the Hub's loading output (imports them: call it
    after the checks that need no torch)."""
    if args.quiet:
        from taskvec.model.loading import silence_loading

        silence_loading()


def _validate(args: argparse.Namespace) -> None:
    from taskvec.extraction.precheck import check_extraction

    check_extraction(Path(args.config))
    from taskvec.extraction.check import validate

    _, rows = validate(Path(args.config))
    _print_rows(rows)
    print(
        "config OK: `taskvec extract --config "
        + args.config
        + "` will run this (no weights were loaded)"
    )


def _print_rows(rows: list[tuple[str, str]]) -> None:
    """`field  value` lines, fields aligned (a value starting on its own line does not widen the column)."""
    width = max(len(k) for k, v in rows if not v.startswith("\n"))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _print_files(result: AnalysisResult) -> None:
    """The CSV and the plots an analysis wrote."""
    print(f"table: {result.csv}")
    for path in result.plots:
        print(f"plot: {path}")


def _analysis_dir(args: argparse.Namespace, sessions: list[Session]) -> Path:
    """`--out`, or `{output_dir}/analysis/{command}_{session labels}` so results of different
    inputs never mix."""
    if args.out is not None:
        return Path(args.out)
    from taskvec.analysis.plotting import session_labels

    stem = "_vs_".join(session_labels(sessions))
    return Path(args.output_dir) / "analysis" / f"{args.command}_{stem}"


def _ls(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    import pandas as pd

    from taskvec.session.names import list_sessions

    root = Path(args.root or args.output_dir)
    sessions = list_sessions(root)
    if not sessions:
        print(f"no sessions under {root / 'task_vector'}")
        return
    print(
        pd.DataFrame([asdict(s) for s in sessions], dtype=object).fillna("-").to_string(index=False)
    )


def _show(args: argparse.Namespace) -> None:
    from taskvec.session.reader import load_session

    _print_rows(load_session(args.session, Path(args.output_dir)).describe())


def _compare(args: argparse.Namespace) -> None:
    from taskvec.analysis import compare
    from taskvec.session.reader import load_session

    sessions = [load_session(s, Path(args.output_dir)) for s in args.sessions]
    result = compare(sessions, _analysis_dir(args, sessions))
    from taskvec.analysis.compare_summary import compare_summary

    print(compare_summary(result.table, len(sessions)))
    print(f"(every pair and column: {result.csv})")
    _print_files(result)


def _project(args: argparse.Namespace) -> None:
    from taskvec.analysis import project
    from taskvec.analysis.correlate import match_correctness
    from taskvec.session.reader import load_session

    sessions = [load_session(s, Path(args.output_dir)) for s in args.sessions]
    correct = match_correctness(sessions, [Path(r) for r in args.results]) if args.results else None
    result = project(sessions, args.layer, args.position, _analysis_dir(args, sessions), correct)
    print(
        "explained variance: "
        + ", ".join(f"PC{i + 1} {r:.1%}" for i, r in enumerate(result.explained_variance_ratio))
    )
    table = result.table
    print(f"{len(table)} points ({(table.kind == 'mean').sum()} task vectors)")
    _print_files(result)


def _add_session_commands(sub: argparse._SubParsersAction) -> None:
    """ls, show and the analyses; SESSION is a session directory or a name under --output-dir."""
    from taskvec.cli_study import add_study_commands, correlate_command

    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--output-dir", default="outputs", help="where sessions are found (default: outputs)"
    )
    ls = sub.add_parser("ls", parents=[where], help="list the sessions under an output directory")
    ls.add_argument("root", nargs="?", help="same as --output-dir (kept for earlier scripts)")
    ls.set_defaults(func=_ls)
    plots = argparse.ArgumentParser(add_help=False)
    plots.add_argument(
        "--out",
        help="folder for the plots and the CSV table (default: OUTPUT_DIR/analysis/COMMAND_LABELS)",
    )
    show = sub.add_parser("show", parents=[where], help="summarise one session")
    show.add_argument("session", help="session directory or name")
    show.set_defaults(func=_show)
    cmp = sub.add_parser(
        "compare",
        parents=[where, plots],
        help="similarity of task vectors across sessions per layer (cosines, spread distance, CKA, probe)",
    )
    cmp.add_argument(
        "sessions", nargs="+", metavar="SESSION", help="two or more session directories or names"
    )
    cmp.set_defaults(func=_compare)
    prj = sub.add_parser(
        "project",
        parents=[where, plots],
        help="2-D PCA of per-sample vectors of one or more sessions",
    )
    prj.add_argument("sessions", nargs="+", metavar="SESSION", help="session directories or names")
    prj.add_argument(
        "--layer", type=int, required=True, help="layer (block index; negative counts from the end)"
    )
    prj.add_argument(
        "--position", help="token position as written in the config (default: the first one)"
    )
    prj.add_argument(
        "--results",
        nargs="+",
        metavar="RESULTS_DIR",
        help="evaluation results directories: colour the points by correctness where one matches a session",
    )
    prj.set_defaults(func=_project)
    cor = sub.add_parser(
        "correlate", parents=[where, plots], help="relate per-sample vectors to answer correctness"
    )
    cor.add_argument("session", help="session directory or name")
    cor.add_argument(
        "results_dir",
        nargs="?",
        help="evaluation results directory holding predictions.jsonl "
        "(default: the one recorded by a one-pass `taskvec evaluate --extract`)",
    )
    cor.add_argument(
        "--force",
        action="store_true",
        help="join even if model, split or prompts differ from the session's (the outputs say so)",
    )
    cor.add_argument(
        "--permutations",
        type=int,
        default=100,
        metavar="N",
        help="shuffled-label repeats for the permutation p-value (default: 100; 0 skips it)",
    )
    cor.set_defaults(func=correlate_command)
    add_study_commands(sub, where, plots)


def _patch(args: argparse.Namespace) -> None:
    from taskvec.patching.config import load_patch_config

    load_patch_config(Path(args.config))  # schema errors before torch is imported
    _quiet_loading(args)
    from taskvec.patching.run import patch
    from taskvec.patching.summary import format_summary

    result = patch(Path(args.config), progress=not args.quiet, resume=args.resume)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun rank 0 reports for every rank
    print(format_summary(result.summary))
    print(f"results: {result.directory}")
    print(f"plot: {result.directory / 'patching.png'}")


def _add_patch_command(sub: argparse._SubParsersAction) -> None:
    """patch: task-vector patching (Hendel et al. 2023) driven by a patch config."""
    pt = sub.add_parser(
        "patch",
        help="patch task vectors into zero-shot prompts, sweep layers, score (Hendel et al. 2023)",
    )
    pt.add_argument(
        "--config",
        required=True,
        help="patch config YAML (e.g. configs/smollm2-135m/words_patch_chat.yaml)",
    )
    pt.add_argument("--quiet", action="store_true", help="no progress bars")
    pt.add_argument(
        "--resume",
        metavar="RESULTS_DIR",
        help="finish an interrupted run of the same config (finished tasks are kept)",
    )
    pt.set_defaults(func=_patch)


def _steer(args: argparse.Namespace) -> None:
    from taskvec.steering.config import load_steer_config

    if args.config:
        load_steer_config(Path(args.config))  # schema errors before torch is imported
    from taskvec.steering.run import steer
    from taskvec.steering.summary import format_table

    done = steer(
        Path(args.config) if args.config else None,
        progress=not args.quiet,
        resume=Path(args.resume) if args.resume else None,
    )
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun rank 0 reports for every rank
    print(format_table(done.result))
    print(f"results: {done.directory}")
    print(f"plot: {done.directory / 'steering.png'}")


def _add_steer_command(sub: argparse._SubParsersAction) -> None:
    """steer: generate while a task vector steers the residual stream, scored by the evaluation."""
    st = sub.add_parser(
        "steer",
        help="generate while a task vector steers the residual stream; score every condition",
    )
    st.add_argument(
        "--config",
        help="steer config YAML (e.g. configs/smollm2-135m/steer_past_tense_cot_last.yaml); "
        "required unless --resume",
    )
    st.add_argument(
        "--resume", metavar="DIR", help="finish an interrupted steering run (its results directory)"
    )
    st.add_argument("--quiet", action="store_true", help="no progress bars")
    st.set_defaults(func=_steer)


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line, like every other error: `taskvec evaluate: error: ...`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    from taskvec import __version__

    parser = _Parser(prog="taskvec", description="Extract and study task vectors.")
    parser.add_argument("--version", action="version", version=f"taskvec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    ext = sub.add_parser("extract", help="run an extraction config and write a session")
    ext.add_argument("--config", required=True, help="extraction config YAML")
    ext.add_argument("--quiet", action="store_true", help="no progress bar")
    ext.add_argument(
        "--resume",
        metavar="SESSION",
        help="continue an interrupted session (its directory or name)",
    )
    ext.set_defaults(func=_extract)
    val = sub.add_parser(
        "validate", help="check an extraction config, its prompts and data without loading weights"
    )
    val.add_argument("--config", required=True, help="extraction config YAML")
    val.set_defaults(func=_validate)
    add_evaluate_command(sub)
    _add_patch_command(sub)
    _add_steer_command(sub)
    _add_session_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "quiet", False):
            os.environ["TQDM_DISABLE"] = (
                "1"  # read when tqdm is imported: also silences bars of libraries that use tqdm directly
            )
        args.func(args)
    except Interrupted as exc:
        print(f"taskvec: {exc}", file=sys.stderr)
        return 130
    except TaskvecError as exc:
        print(f"taskvec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("taskvec: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:  # `python run.py` with a Python that lacks the packages
        if not exc.name or exc.name.split(".")[0] == "taskvec":
            raise
        print(
            f"taskvec: error: this Python ({sys.executable}) has no module '{exc.name}'; run "
            "`source .venv/bin/activate` first (`make demo` creates .venv) or `pip install -e .`",
            file=sys.stderr,
        )
        return 2
    return 0
