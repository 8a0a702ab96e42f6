"""What an evaluation reports: metrics.json (accuracy and counts over the finished predictions,
the run record, timings, settings), written by rank 0 alone."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from taskvec.evaluation.joint import SessionSink
from taskvec.model.generation import GenerationStats
from taskvec.model.loading import dtype_name
from taskvec.prompts.render import start_token
from taskvec.schemas.metrics import Metrics
from taskvec.session.atomic import save_json
from taskvec.versions import package_versions

if TYPE_CHECKING:
    from taskvec.evaluation.prepare import EvalPrepared


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy and counts over finished rows (truncated rows count as wrong; see
    `accuracy_with_fallback`)."""
    n = max(len(rows), 1)
    return {
        "accuracy": sum(r["correct"] for r in rows) / n,
        "n_samples": len(rows),
        "n_correct": sum(r["correct"] for r in rows),
        "n_parse_failures": sum(r["parsed_answer"] is None for r in rows),
        "n_truncated": sum(r["truncated"] for r in rows),
        "accuracy_with_fallback": sum(r["correct_if_not_truncated"] for r in rows) / n,
        "n_generated_tokens": sum(r["n_generated_tokens"] for r in rows),
        **({"by_kind": by_kind(rows)} if any(r.get("kind") for r in rows) else {}),
    }


def by_kind(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Accuracy per question kind (the builtin generator's), kinds in order of first appearance."""
    out: dict[str, dict[str, float | int]] = {}
    for kind in dict.fromkeys(str(r.get("kind")) for r in rows):
        mine = [r for r in rows if str(r.get("kind")) == kind]
        n_correct = sum(r["correct"] for r in mine)
        out[kind] = {"n": len(mine), "n_correct": n_correct, "accuracy": n_correct / len(mine)}
    return out


def build_metrics(
    prep: EvalPrepared,
    directory: Path,
    status: str,
    rows: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    device: torch.device,
    dtype: torch.dtype,
    stop: bool,
) -> dict[str, Any]:
    """metrics.json: the summary of `rows`, the settings and every run so far."""
    o, cfg = prep.options, prep.prompt_config
    return {
        "session_name": directory.name,
        "status": status,
        **summary(rows),
        "n_total": len(prep.samples),
        "split": o.split,
        "model": prep.model_ref.spec,
        "model_id": prep.model_ref.identity,
        "model_short": prep.model_ref.short_name,
        "prompt_type": cfg.prompt_type,
        "n_shot": cfg.n_shot,
        "start_token": start_token(cfg, prep.tokenizer).record(),
        "generation": {
            **cfg.generation.model_dump(mode="json"),
            "batch_size": o.batch_size,
            "stop_after_answer": stop,
            "prefix_cache": o.prefix_cache,
            "draft_tokens": o.draft_tokens,
        },
        "truncated_policy": "a generation that reaches max_new_tokens without an answer sentence "
        "is `truncated` and counts as wrong",
        "dtype": dtype_name(dtype),
        "device": str(device),
        "timings": runs[-1].get("timings", {}) if runs else {},
        "runs": runs,
        "versions": package_versions(),
        "created_at": runs[0]["started_at"]
        if runs
        else datetime.now().isoformat(timespec="seconds"),
        "config": {
            **o.model_dump(mode="json"),
            "config_path": str(prep.config_path),
            "prompt_config": cfg.model_dump(mode="json"),
        },
    }


def timings(
    prep: EvalPrepared, stats: GenerationStats, load_s: float, generate_s: float, n_samples: int
) -> dict[str, float]:
    """metrics.json `timings`: `stats` summed over the ranks, `generate_s` the slowest rank's."""
    return {
        **prep.timings,
        "load_model_s": load_s,
        "generate_s": generate_s,
        "prefill_s": stats.prefill_s,
        "decode_s": stats.decode_s,
        "prefill_share": stats.prefill_s / max(stats.prefill_s + stats.decode_s, 1e-9),
        "samples_per_s": n_samples / max(generate_s, 1e-9),
        "tokens_per_s": stats.generated_tokens / max(generate_s, 1e-9),
        "prefill_tokens": stats.prefill_tokens,
        "decode_steps": stats.decode_steps,
        "draft_tokens": stats.draft_tokens,
        "accepted_draft_tokens": stats.accepted_tokens,
    }


def write_metrics(
    prep: EvalPrepared,
    directory: Path,
    status: str,
    rows: dict[int, dict[str, Any]],
    runs: list[dict[str, Any]],
    device: torch.device,
    dtype: torch.dtype,
    stop: re.Pattern[str] | None,
    sink: SessionSink | None,
) -> Metrics:
    """Write metrics.json for `rows` (the finished predictions) and the run ending as `status`."""
    runs[-1].update(
        status=status, n_saved=len(rows), ended_at=datetime.now().isoformat(timespec="seconds")
    )
    metrics = build_metrics(
        prep,
        directory,
        status,
        [rows[i] for i in sorted(rows)],
        runs,
        device,
        dtype,
        stop is not None,
    )
    metrics["world_size"] = runs[-1]["world_size"]
    metrics["extraction_session"] = str(sink.paths.task_vector_dir) if sink is not None else None
    written = Metrics.model_validate(metrics)
    save_json(directory / "metrics.json", written.dump())
    return written
