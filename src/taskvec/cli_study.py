"""Command line of the study commands: `lens`, `report`, and correlate's printed summary."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from taskvec.cli import _analysis_dir, _print_files
from taskvec.errors import TaskvecError

if TYPE_CHECKING:
    from taskvec.analysis.results import CorrelateResult


def correlate_command(args: argparse.Namespace) -> None:
    from taskvec.analysis import correlate
    from taskvec.session.reader import load_session

    session = load_session(args.session, Path(args.output_dir))
    results_dir = args.results_dir or session.info.evaluation_results
    if results_dir is None:
        raise TaskvecError(
            f"correlate: session '{session.name}' records no evaluation; pass RESULTS_DIR "
            "(or make both in one pass: taskvec evaluate --config PROMPT_CONFIG --extract EXTRACTION_CONFIG)"
        )
    result = correlate(
        session,
        Path(results_dir),
        _analysis_dir(args, [session]),
        force=args.force,
        permutations=args.permutations,
    )
    print(
        f"joined by sample_id: {result.matched} matched, {result.session_only} session samples "
        "without a prediction, "
        f"{result.predictions_only} predictions without vectors"
    )
    if result.forced:
        print(f"note: {result.forced}")
    if result.note:
        print(f"note: {result.note}")
    print_correlate(result)


def print_correlate(result: CorrelateResult) -> None:
    """The probe and its controls per layer and position, the verdict, then the files."""
    table = result.table
    cols = ["layer", "position", "n_correct", "n_incorrect", "auc", "auc_std", "shuffled_auc_q95"]
    cols += ["p_value", *[c for c in ("surface_auc", "kind_auc") if c in table], "probe_acc"]
    cols += ["baseline_acc", "verdict"]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    beats = int((table.verdict == "beats controls").sum())
    if beats:
        print(
            f"{beats} of {len(table)} layer/position probes beat their controls (p < 0.05 each; "
            f"about {0.05 * len(table):.1f} would by chance)"
        )
    else:
        print(
            f"no layer/position probe beats its controls: at none of the {len(table)} does the "
            "probe's AUC exceed the shuffled-label band and the baselines"
        )
    if len(result.by_kind) and result.csv is not None:
        print(f"by question kind: {result.csv.parent / 'correlate_by_kind.csv'}")
    _print_files(result)


def _lens(args: argparse.Namespace) -> None:
    from taskvec.analysis.lens import lens
    from taskvec.session.reader import load_session

    session = load_session(args.session, Path(args.output_dir))
    minus = load_session(args.minus, Path(args.output_dir)) if args.minus else None
    out = _analysis_dir(args, [session] + ([minus] if minus else []))
    result = lens(session, out, minus, args.layers, args.position, args.top)
    for (layer, position), group in result.table.groupby(["layer", "position"], sort=False):
        tokens = "  ".join(f"{r.token} {r.prob:.2f}" for r in group.itertuples())
        print(f"layer {layer:>3} pos {position:<5} {tokens}")
    gold = result.gold
    if len(gold):
        print("gold first answer token, from each sample's own vector:")
        cols = ["layer", "position", "n", "median_rank", "mean_rank", "mean_prob", "top1", "top10"]
        print(gold[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"table: {out / 'lens_gold.csv'}")
    elif result.note:
        print(f"note: {result.note}")
    _print_files(result)


def _add_lens_command(
    sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]
) -> None:
    """lens: task vectors (or their difference) through the final norm and unembedding."""
    lns = sub.add_parser(
        "lens",
        parents=parents,
        help="logit lens: top tokens of task vectors per layer, and the rank of the gold answer",
    )
    lns.add_argument("session", help="session directory or name")
    lns.add_argument("--minus", metavar="OTHER", help="read the difference SESSION - OTHER")
    lns.add_argument(
        "--layers",
        type=int,
        nargs="+",
        help="layers to read (negative counts from the end; default all)",
    )
    lns.add_argument("--position", help="token position as written in the config (default: all)")
    lns.add_argument("--top", type=int, default=10, help="tokens per layer (default: 10)")
    lns.set_defaults(func=_lens)


def _report(args: argparse.Namespace) -> None:
    from taskvec.report.run import make_report

    page = make_report(
        [Path(i) for i in args.items],
        Path(args.out or Path(args.output_dir) / "report"),
        Path(args.output_dir),
        permutations=args.permutations,
        lens_top=args.lens_top,
    )
    print(f"report: {page}")
    print(f"figures and tables: {page.parent / 'figures'}")


def _add_report_command(sub: argparse._SubParsersAction, where: argparse.ArgumentParser) -> None:
    rep = sub.add_parser(
        "report",
        parents=[where],
        help="one self-contained report.html for sessions, results directories or folders holding them",
    )
    rep.add_argument(
        "items",
        nargs="+",
        metavar="ITEM",
        help="a session (directory or name), an evaluation, patching or steering results directory, "
        "or a folder holding them",
    )
    rep.add_argument(
        "--out", help="folder for report.html and its figures (default: OUTPUT_DIR/report)"
    )
    rep.add_argument(
        "--permutations",
        type=int,
        default=100,
        metavar="N",
        help="shuffled-label repeats of each correlate probe (default: 100)",
    )
    rep.add_argument(
        "--lens-top",
        type=int,
        default=8,
        metavar="K",
        help="tokens per layer in the lens tables; 0 leaves the lens out (default: 8)",
    )
    rep.set_defaults(func=_report)


def add_study_commands(
    sub: argparse._SubParsersAction,
    where: argparse.ArgumentParser,
    plots: argparse.ArgumentParser,
) -> None:
    """lens (with --out) and report (its own --out)."""
    _add_lens_command(sub, [where, plots])
    _add_report_command(sub, where)
