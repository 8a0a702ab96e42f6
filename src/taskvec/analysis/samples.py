"""A session's dataset samples, rebuilt from its config without a model: gold answers, questions,
kinds."""

from __future__ import annotations

from taskvec.data import sample_kinds
from taskvec.data.base import DatasetConfig, Sample
from taskvec.errors import TaskvecError
from taskvec.session.reader import Session


def session_samples(session: Session) -> tuple[dict[str, Sample], str]:
    """`sample_id -> Sample` for the session's split and max_samples, and a note saying why it is empty
    (a dataset that cannot be read here, such as a file that moved)."""
    from taskvec.prompts.build import select_samples
    from taskvec.prompts.config import PromptConfig

    cfg = session.config
    try:
        prompt_cfg = PromptConfig.model_validate(cfg["prompt_config"])
        samples, _ = select_samples(
            prompt_cfg, cfg.get("split", "train"), cfg.get("max_samples"), session.task_vector_dir
        )
    except (TaskvecError, KeyError, ValueError, OSError) as exc:
        return {}, f"the session's samples cannot be rebuilt ({str(exc).splitlines()[0][:160]})"
    return {s.id: s for s in samples}, ""


def session_kinds(session: Session) -> dict[str, str]:
    """`sample_id -> question kind` where the session's data has kinds (the builtin financial generator)."""
    try:
        dataset = DatasetConfig.model_validate(session.info.dataset or {})
    except ValueError:
        return {}
    return sample_kinds(dataset, session.info.split)
