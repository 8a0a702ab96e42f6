"""Print the README's per-task patching table (markdown) from patching.json files.

Usage:
    python benchmarks/patching_table.py results/words_plain_*/patching.json \
        results/words_chat_*/patching.json
Each file is one prompt style (its config tag names the column group).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _layer(value: int | None) -> str:
    return "none" if value is None else str(value)


def table(summaries: list[dict[str, Any]]) -> str:
    """One row per task: zero-shot / few-shot / TV (own layer) / best layer for each summary,
    then the means."""
    tags = [s["config"].get("tag") or "patching" for s in summaries]
    head = "| task | " + " | ".join(f"{t}: zero / few / TV / layer" for t in tags) + " |"
    lines = [head, "|---|" + "---|" * len(summaries)]
    for name in summaries[0]["tasks"]:
        cells = []
        for s in summaries:
            found = [x for x in s["per_task"] if x["task"] == name]
            if not found:
                cells.append("not run")
                continue
            t = found[0]["test"]
            cells.append(
                f"{_f(t['zero_shot'])} / {_f(t['few_shot'])} / {_f(t['task_vector_per_task'])} / "
                f"{_layer(t['layer'] if s['layer_choice'] == 'per_task' else None)}"
            )
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    for key, label in (
        ("test", "mean, all tasks"),
        ("test_learned_in_context", "mean, few-shot >= 0.5"),
    ):
        cells = [
            f"{_f(s[key]['zero_shot'])} / {_f(s[key]['few_shot'])} / {_f(s[key]['task_vector_per_task'])} "
            f"(shared layer {_layer(s['best_layer'])}: {_f(s[key]['task_vector_shared'])}); "
            f"n={s[key]['n_tasks']}"
            for s in summaries
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table([json.loads(Path(p).read_text()) for p in sys.argv[1:]]))
