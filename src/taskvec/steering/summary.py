"""Scoring a condition's generations two ways, the summary of every condition, and the CLI's table.

`accuracy` is the evaluation's own parse of the answer (`evaluation.answers`, the `correct`
field of predictions.jsonl). `accuracy_prefix` is patching's rule (`patching.scoring`): the
generation begins with the whole gold answer at a token boundary (leading whitespace aside),
however it goes on, as Hendel et al. score a first token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from taskvec.patching.scoring import AnswerScorer
from taskvec.steering.conditions import Condition
from taskvec.steering.schema import ConditionScores, Scores, SteeringResult


def begins_with_answer(
    scorer: AnswerScorer, tokenizer: PreTrainedTokenizerBase, tokens: Sequence[int], gold: str
) -> bool:
    """Whether the first k tokens spell `gold` for some k (patching's rule, read off a whole
    generation)."""
    for k in range(1, len(tokens) + 1):
        text = str(tokenizer.decode(list(tokens[:k]), skip_special_tokens=True))
        if scorer.correct(gold, text):
            return True
        if not scorer.keep(gold, text):
            return False
    return False


def short_expression(expression: str, model_short: str) -> str:
    """The expression with each full session name cut to its tag (`COT5_{model}_task_vector_{time}`
    -> `COT5`)."""
    return re.sub(rf"_{re.escape(model_short)}_task_vector_\d{{8}}_\d{{6}}", "", expression)


def _scores(
    name: str, rows: dict[int, dict[str, Any]], baseline: dict[int, dict[str, Any]]
) -> dict:
    n = len(rows)
    both = [i for i in rows if i in baseline]
    changed = sum(rows[i]["generation"] != baseline[i]["generation"] for i in both)
    return {
        "name": name,
        "accuracy": sum(r["correct"] for r in rows.values()) / max(n, 1),
        "accuracy_prefix": sum(r["correct_prefix"] for r in rows.values()) / max(n, 1),
        "n": n,
        "mean_new_tokens": sum(r["n_generated_tokens"] for r in rows.values()) / max(n, 1),
        "changed_vs_baseline": changed / max(len(both), 1),
    }


def summarise(
    conditions: list[Condition], rows: dict[str, dict[int, dict[str, Any]]], mode: str, where: str
) -> tuple[Scores, list[ConditionScores]]:
    """The baseline's scores and each steered condition's, over the prompts generated so far."""
    base = rows[conditions[0].name]
    out = []
    for c in conditions[1:]:
        assert c.layer is not None
        fields = _scores(c.name, rows[c.name], base)
        out.append(
            ConditionScores(
                **fields, layer=c.layer, scale=c.scale, mode=mode, where=where, control=c.control
            )
        )
    return Scores(**_scores(conditions[0].name, base, base)), out


def format_table(result: SteeringResult) -> str:
    """The CLI's report: one line per condition, the baseline first."""
    head = f"{'condition':<28} {'layer':>5} {'scale':>6} {'control':>7} {'acc':>5} {'prefix':>6}"
    lines = [head + f" {'changed':>7} {'new tok':>7} {'n':>4}"]
    b = result.baseline
    lines.append(
        f"{b.name:<28} {'-':>5} {'-':>6} {'-':>7} {b.accuracy:>5.2f} {b.accuracy_prefix:>6.2f} "
        f"{'-':>7} {b.mean_new_tokens:>7.1f} {b.n:>4}"
    )
    for c in result.conditions:
        lines.append(
            f"{c.name:<28} {c.layer:>5} {c.scale:>6g} {c.control:>7} {c.accuracy:>5.2f} "
            f"{c.accuracy_prefix:>6.2f} {c.changed_vs_baseline:>7.2f} {c.mean_new_tokens:>7.1f} "
            f"{c.n:>4}"
        )
    v = result.vector
    lines.append(
        f"vector '{short_expression(v.expression, result.model_short)}' at position {v.position}, "
        f"mode {result.config['mode']}, where {result.config['where']}; acc: the evaluation's "
        "parse; prefix: the generation begins with the gold answer"
    )
    return "\n".join(lines)
