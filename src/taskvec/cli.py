"""Command line: parse arguments, call the library, turn TaskvecError into one line and exit 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from taskvec.errors import Interrupted, TaskvecError

if TYPE_CHECKING:
    import pandas as pd

    from taskvec.session.layout import SessionPaths
    from taskvec.session.reader import Session


def _extract(args: argparse.Namespace) -> None:
    from taskvec.config import check_configs

    # a typo is reported in about a second, before torch is imported
    check_configs(Path(args.config))
    from taskvec.extraction.run import extract

    paths = extract(Path(args.config), progress=not args.quiet, resume=args.resume)
    print(f"session: {paths.name}")
    print(f"task vectors: {paths.task_vector_dir}")
    print(f"per-sample vectors: {paths.raw_dir}")
    if not args.quiet:
        _next_steps(paths)


def _next_steps(paths: SessionPaths) -> None:
    """What a newcomer can do with the session just written."""
    import json

    key = json.loads(paths.metadata.read_text())["keys"][0]
    task_vector_dir = paths.task_vector_dir
    print("next steps (in a shell where `source .venv/bin/activate` has run):")
    print(f"  taskvec show {task_vector_dir}")
    print(
        f"  python -c \"import taskvec; s = taskvec.load_session('{task_vector_dir}'); "
        f"print(s.mean('{key}').shape, s.vectors('{key}').shape)\""
    )
    print(
        "  taskvec extract --config configs/smollm2-135m/extract_vanilla_0shot.yaml   # a second "
        "session (0-shot prompts)"
    )
    print(f"  taskvec compare {task_vector_dir.name} vanilla_0shot_...   # names from `taskvec ls`")


def _validate(args: argparse.Namespace) -> None:
    from taskvec.config import check_configs

    check_configs(Path(args.config))
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


def _print_table(table: pd.DataFrame) -> None:
    """Print a table in full, then every file the analysis wrote."""
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    _print_files(table)


def _print_files(table: pd.DataFrame) -> None:
    """The CSV (`attrs["csv"]`) and the plots (`attrs["plots"]`) an analysis wrote."""
    print(f"table: {table.attrs['csv']}")
    for path in table.attrs.get("plots", []):
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

    from taskvec.session.reader import list_sessions

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
    table = compare(sessions, _analysis_dir(args, sessions))
    from taskvec.analysis.compare_summary import compare_summary

    print(compare_summary(table, len(sessions)))
    print(f"(every pair and column: {table.attrs['csv']})")
    _print_files(table)


def _project(args: argparse.Namespace) -> None:
    from taskvec.analysis import project
    from taskvec.analysis.correlate import match_correctness
    from taskvec.session.reader import load_session

    sessions = [load_session(s, Path(args.output_dir)) for s in args.sessions]
    correct = match_correctness(sessions, [Path(r) for r in args.results]) if args.results else None
    table = project(sessions, args.layer, args.position, _analysis_dir(args, sessions), correct)
    print(
        "explained variance: "
        + ", ".join(
            f"PC{i + 1} {r:.1%}" for i, r in enumerate(table.attrs["explained_variance_ratio"])
        )
    )
    print(f"{len(table)} points ({(table.kind == 'mean').sum()} task vectors)")
    _print_files(table)


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


def _evaluate(args: argparse.Namespace) -> None:
    from taskvec.prompts.config import load_prompt_config

    if args.config and Path(args.config).is_file():
        load_prompt_config(Path(args.config))  # schema errors before torch is imported
    from taskvec.evaluation.run import evaluate

    result = evaluate(
        Path(args.config) if args.config else None,
        progress=not args.quiet,
        resume=Path(args.resume) if args.resume else None,
        extract=Path(args.extract) if args.extract else None,
        split=args.split,
        max_samples=args.max_samples,
        batch_size=args.batch_size,
        model=args.model,
        output_dir=args.output_dir,
        device=args.device,
        dtype=args.dtype,
        prefix_cache=False if args.no_prefix_cache else None,
        draft_tokens=args.draft_tokens,
    )
    m = result.metrics
    print(f"results: {result.directory}")
    print(
        f"accuracy: {m['accuracy']:.4f} ({m['n_correct']}/{m['n_samples']} correct, "
        f"{m['n_parse_failures']} without an answer, "
        f"{m['n_truncated']} truncated)"
    )
    if m.get("extraction_session"):
        print(f"extraction session (same pass): {m['extraction_session']}")
    t = m["timings"]
    print(
        f"generated {m['n_generated_tokens']} tokens in {t['generate_s']:.1f} s "
        f"({t['tokens_per_s']:.1f} tokens/s, "
        f"prefill {t['prefill_share']:.0%} of model time)"
    )


def _add_evaluate_command(sub: argparse._SubParsersAction) -> None:
    """evaluate: generate answers for a prompt config's split, parse and score them."""
    ev = sub.add_parser(
        "evaluate", help="generate answers for a prompt config, parse and score them"
    )
    ev.add_argument(
        "--config",
        help="prompt config YAML (e.g. configs/smollm2-135m/cot_5shot_answer.yaml); required unless --resume",
    )
    ev.add_argument(
        "--resume",
        metavar="RESULTS_DIR",
        help="finish an interrupted evaluation (its results directory)",
    )
    ev.add_argument(
        "--extract",
        metavar="EXTRACTION_CONFIG",
        help="also write this extraction config's session from the same prefill "
        "(same prompts: set its split and max_samples to match)",
    )
    ev.add_argument("--split", help="dataset split (default: test)")
    ev.add_argument(
        "--max-samples", type=int, help="the first N samples of the split (default: all)"
    )
    ev.add_argument("--batch-size", type=int, help="rows decoding at once (default: 32)")
    ev.add_argument(
        "--no-prefix-cache",
        action="store_true",
        help="prefill every prompt in full (default: shared prefixes once)",
    )
    ev.add_argument(
        "--draft-tokens",
        type=int,
        metavar="N",
        help="greedy: prompt-lookup drafts a row checks per step while the batch has room; "
        "0 turns them off (default: 8)",
    )
    ev.add_argument("--model", help="overrides the prompt config's model")
    ev.add_argument(
        "--output-dir", help="where the results directory is created (default: results)"
    )
    ev.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    ev.add_argument("--dtype", help="auto, float32, bfloat16 or float16 (default: auto)")
    ev.add_argument(
        "--quiet",
        action="store_true",
        help="print only the results (no progress bars, no loading output)",
    )
    ev.set_defaults(func=_evaluate)


def _patch(args: argparse.Namespace) -> None:
    from taskvec.patching.config import load_patch_config

    load_patch_config(Path(args.config))  # schema errors before torch is imported
    from taskvec.patching.run import patch
    from taskvec.patching.summary import format_summary

    result = patch(Path(args.config), progress=not args.quiet)
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
    pt.set_defaults(func=_patch)


def build_parser() -> argparse.ArgumentParser:
    from taskvec import __version__

    parser = argparse.ArgumentParser(prog="taskvec", description="Extract and study task vectors.")
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
    _add_evaluate_command(sub)
    _add_patch_command(sub)
    _add_session_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "quiet", False):
            os.environ["TQDM_DISABLE"] = (
                "1"  # read when tqdm is imported: also silences bars of libraries that use tqdm directly
            )
            from taskvec.model.loading import silence_loading

            silence_loading()
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
    return 0
