"""`taskvec evaluate`'s arguments and what it prints; `cli.py` adds the command.

Imports no torch until the checks that need none have passed (`extraction.precheck`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path


def _evaluate(args: argparse.Namespace) -> None:
    from taskvec.extraction.precheck import check_not_complete
    from taskvec.prompts.config import load_prompt_config
    from taskvec.prompts.splits import check_splits

    if args.config and Path(args.config).is_file():  # mistakes before torch is imported
        check_splits(load_prompt_config(Path(args.config)), args.split or "test")
    if args.resume:
        check_not_complete(Path(args.resume) / "metrics.json", f"'{args.resume}'")
    if args.quiet:
        from taskvec.model.loading import silence_loading

        silence_loading()
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
        tag=args.tag,
        device_map=args.device_map,
    )
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun rank 0 reports for every rank
    m = result.metrics
    print(f"results: {result.directory}")
    print(
        f"accuracy: {m.accuracy:.4f} ({m.n_correct}/{m.n_samples} correct, "
        f"{m.n_parse_failures} without an answer, "
        f"{m.n_truncated} truncated)"
    )
    if m.extraction_session:
        print(f"extraction session (same pass): {m.extraction_session}")
    t = m.timings
    print(
        f"generated {m.n_generated_tokens} tokens in {t['generate_s']:.1f} s "
        f"({t['tokens_per_s']:.1f} tokens/s, "
        f"prefill {t['prefill_share']:.0%} of model time)"
    )
    if m.world_size > 1:
        from taskvec.evaluation.ranks import load_balance

        print(load_balance(m.runs[-1]["ranks"]))
    if not args.quiet:
        from taskvec.session.hints import after_evaluate

        print("next steps:")
        for step in after_evaluate(result.directory, m, Path("outputs")):
            print(f"  {step}")


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= `minimum` (the error names the flag)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    return parse


def add_evaluate_command(sub: argparse._SubParsersAction) -> None:
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
        "--max-samples", type=_at_least(1), help="the first N samples of the split (default: all)"
    )
    ev.add_argument("--batch-size", type=_at_least(1), help="rows decoding at once (default: 32)")
    ev.add_argument(
        "--no-prefix-cache",
        action="store_true",
        help="prefill every prompt in full (default: shared prefixes once)",
    )
    ev.add_argument(
        "--draft-tokens",
        type=_at_least(0),
        metavar="N",
        help="greedy: prompt-lookup drafts a row checks per step while the batch has room; "
        "0 turns them off (default: 8)",
    )
    ev.add_argument(
        "--tag",
        help="starts the results directory's name, so runs of different tasks are told apart "
        "(default: {prompt_type}_{n_shot}shot_{split})",
    )
    ev.add_argument("--model", help="overrides the prompt config's model")
    ev.add_argument(
        "--output-dir", help="where the results directory is created (default: results)"
    )
    ev.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    ev.add_argument("--dtype", help="auto, float32, bfloat16 or float16 (default: auto)")
    ev.add_argument(
        "--device-map",
        choices=["auto"],
        help="auto: spread a model too big for one device over the node's devices (accelerate)",
    )
    ev.add_argument(
        "--quiet",
        action="store_true",
        help="print only the results (no progress bars, no loading output)",
    )
    ev.set_defaults(func=_evaluate)
