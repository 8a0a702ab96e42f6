"""Print the docs' steering tables (markdown) from steering.json files.

Usage:
    python benchmarks/steering_table.py results/steer_past_tense_cot_*/steering.json
    python benchmarks/steering_table.py --best results/steer_fewshot_tv_add_*/steering.json
Default: one table per file, a row per condition (the baseline first). `--best`: one row per
file, the baseline and the steered condition (random controls left out) with the highest
`accuracy_prefix` (ties: the shallower layer, then the smaller scale).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from taskvec.steering.schema import Scores, SteeringResult  # noqa: E402

HEAD = "| condition | acc | prefix | changed | new tokens |"


def _row(name: str, s: Scores, baseline: bool = False) -> str:
    changed = "-" if baseline else f"{s.changed_vs_baseline:.2f}"
    return (
        f"| {name} | {s.accuracy:.2f} | {s.accuracy_prefix:.2f} | {changed} | "
        f"{s.mean_new_tokens:.1f} |"
    )


def conditions(result: SteeringResult) -> str:
    """A row per condition: both scores, the share changed against the baseline, new tokens."""
    cfg = result.config
    title = f"{cfg['tag']}: {cfg['mode']} at {cfg['where']}, n={result.baseline.n}"
    lines = [title, "", HEAD, "|---|---|---|---|---|", _row("baseline", result.baseline, True)]
    lines += [_row(c.name, c) for c in result.conditions]
    return "\n".join(lines)


def best(results: list[SteeringResult]) -> str:
    """A row per file: its baseline and its best steered condition by the prefix rule (a random
    control is what a condition is measured against, not a candidate)."""
    lines = [
        "| run | baseline acc / prefix | best condition | acc | prefix | n |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        steered = [c for c in r.conditions if c.control == "none"]
        top = max(steered, key=lambda c: (c.accuracy_prefix, -c.layer, -c.scale))
        b = r.baseline
        lines.append(
            f"| {r.config['tag']} | {b.accuracy:.2f} / {b.accuracy_prefix:.2f} | {top.name} | "
            f"{top.accuracy:.2f} | {top.accuracy_prefix:.2f} | {b.n} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    summary = argv[:1] == ["--best"]
    results = [SteeringResult.load(Path(p).parent) for p in argv[1 if summary else 0 :]]
    print(best(results) if summary else "\n\n".join(conditions(r) for r in results))


if __name__ == "__main__":
    main(sys.argv[1:])
