"""The results directory of a new evaluation: a unique name and the resolved prompt config that
re-runs it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml

from taskvec.evaluation.prepare import EvalPrepared
from taskvec.session.atomic import save_text
from taskvec.session.directories import create_unique_dir
from taskvec.session.layout import session_name


def _rerun_header(prep: EvalPrepared) -> str:
    """A comment for config.yaml giving the command that re-runs this evaluation."""
    o = prep.options
    args = f"--split {o.split} --batch-size {o.batch_size}" + (
        f" --max-samples {o.max_samples}" if o.max_samples else ""
    )
    return (
        "# Resolved prompt config of an evaluation; "
        f"re-run with: python run.py --config config.yaml {args}\n"
    )


def new_results(prep: EvalPrepared) -> Path:
    """Create the results directory and write its config.yaml."""
    cfg, o = prep.prompt_config, prep.options
    name = session_name(
        o.tag,
        cfg.prompt_type,
        cfg.n_shot,
        o.split,
        prep.model_ref.short_name,
        datetime.now(),
        kind="results",
    )
    directory = create_unique_dir(o.output_dir, name)
    resolved = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    save_text(directory / "config.yaml", _rerun_header(prep) + resolved)
    return directory
