"""Continuing an evaluation (`--resume`): the options it was made with, and its sound predictions
after checking this config made it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskvec.errors import TaskvecError
from taskvec.evaluation.options import EvalOptions
from taskvec.evaluation.predictions import merge, read_all
from taskvec.evaluation.prepare import EvalPrepared
from taskvec.schemas.metrics import Metrics
from taskvec.session.resume import config_differences


def saved_options(directory: Path) -> dict[str, Any]:
    """The options (`EvalOptions` fields) a results directory was made with, from its metrics.json."""
    path = directory / "metrics.json"
    if not path.is_file():
        raise TaskvecError(
            f"--resume: '{directory}' is not an evaluation results directory (no metrics.json); "
            "pass the directory `taskvec evaluate` printed"
        )
    config = _metrics(path).config
    return {k: v for k, v in config.items() if k in EvalOptions.model_fields}


def _metrics(path: Path) -> Metrics:
    """The results directory's metrics.json, typed; one line when it is not an evaluation's."""
    try:
        return Metrics.read(path)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise TaskvecError(
            f"--resume: cannot read {path} as an evaluation's metrics ({exc.__class__.__name__}); "
            "pass the directory `taskvec evaluate` printed"
        ) from None


def resume_state(
    prep: EvalPrepared, directory: Path
) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """The sound predictions of `directory` and its earlier runs, after checking it was made by
    this config."""
    metrics_path = directory / "metrics.json"
    if not metrics_path.is_file() or not (directory / "config.yaml").is_file():
        raise TaskvecError(
            f"--resume: '{directory}' is not an evaluation results directory (no metrics.json or config.yaml)"
        )
    saved = _metrics(metrics_path)
    if saved.status == "complete":
        raise TaskvecError(f"--resume: '{directory}' is already complete; nothing to resume")
    now = {
        **prep.options.model_dump(mode="json"),
        "prompt_config": prep.prompt_config.model_dump(mode="json"),
    }
    then = {k: v for k, v in saved.config.items() if k != "config_path"}
    diffs = config_differences(then, now)
    if diffs:
        raise TaskvecError(
            f"--resume: the config differs from '{directory.name}' in {len(diffs)} field(s): "
            f"{'; '.join(diffs[:5])}; resume with its own config (taskvec evaluate --resume {directory})"
        )
    rows = read_all(directory)
    merge(directory, rows)  # a distributed run's parts in one file, so any world size goes on
    for idx, row in rows.items():
        if idx >= len(prep.samples) or (row.get("sample_id"), row.get("prompt")) != (
            prep.samples[idx].id,
            prep.prompts[idx].text,
        ):
            raise TaskvecError(
                f"--resume: prediction for sample {idx} ('{row.get('sample_id')}') does not match this "
                "config's prompt; the dataset or tokenizer changed since, so start a new evaluation"
            )
    return rows, list(saved.runs)
