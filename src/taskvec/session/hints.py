"""Next steps printed after a run, built from what just ran and what is on disk (real names).

After an extraction: `show`, then `compare` with a session already there, or a second
session of another prompting strategy; `correlate` where the session knows its evaluation.
After an evaluation: `correlate` with the session of the same model, split and prompts, or
how to make one.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from taskvec.errors import TaskvecError
from taskvec.model.identity import recorded_identity
from taskvec.schemas.metrics import Metrics
from taskvec.schemas.session import SessionMetadata
from taskvec.session.layout import SessionPaths
from taskvec.session.names import SessionSummary, list_sessions, resolve_name

SHIPPED = Path("configs/smollm2-135m")
SECOND = {  # after this strategy, a shipped extraction config of another one
    ("vanilla", 0): "extract_cot_5shot.yaml",
    ("cot", 5): "extract_vanilla_0shot.yaml",
    ("vanilla", 5): "extract_vanilla_0shot.yaml",
}


def short_name(name: str, output_dir: Path) -> str:
    """The label stem when it names this session alone, else the full name."""
    stem = name.split("_task_vector_")[0]
    for summary in list_sessions(output_dir):
        if summary.name == name and summary.model_short:
            stem = stem.removesuffix(f"_{summary.model_short}")
    try:
        return stem if resolve_name(stem, output_dir) == name else name
    except TaskvecError:  # the stem names several sessions
        return name


def _flag(output_dir: Path) -> str:
    """`--output-dir DIR` where DIR is not the commands' default, `outputs`."""
    same = Path(os.path.abspath(output_dir)) == Path(os.path.abspath("outputs"))
    return "" if same else f" --output-dir {output_dir}"


def _meta(paths: SessionPaths) -> SessionMetadata:
    return SessionMetadata.read(paths.metadata)


def after_extract(paths: SessionPaths, output_dir: Path) -> list[str]:
    """Commands to run next, with this session's name and the other sessions' names."""
    meta = _meta(paths)
    me, flag = short_name(paths.name, output_dir), _flag(output_dir)
    steps = [f"taskvec show {me}{flag}"]
    others = [
        s for s in list_sessions(output_dir) if s.name != paths.name and s.status == "complete"
    ]
    if others:
        steps.append(f"taskvec compare {me} {short_name(others[-1].name, output_dir)}{flag}")
    second = SECOND.get((meta.prompt_type, meta.n_shot or 0))
    if second and (SHIPPED / second).is_file():
        steps.append(f"taskvec extract --config {SHIPPED / second}   # another prompting strategy")
    if meta.evaluation_results:
        steps.append(f"taskvec correlate {me}{flag}   # vectors vs the evaluation's correctness")
    return steps


def _same_run(summary: SessionSummary, output_dir: Path, metrics: Metrics) -> bool:
    if summary.status != "complete":
        return False
    try:
        meta = _meta(SessionPaths.under(output_dir, summary.name))
    except ValidationError:  # not a session this release can read: not the same run
        return False
    fields = ("split", "prompt_type", "n_shot")
    same = all(getattr(meta, f) == getattr(metrics, f) for f in fields)
    return same and recorded_identity(meta.dump()) == recorded_identity(metrics.dump())


def after_evaluate(results: Path, m: Metrics, output_dir: Path) -> list[str]:
    """`correlate` with the session of the same prompts under `output_dir`, or how to make one."""
    if m.extraction_session:
        session = Path(m.extraction_session)
        root = session.parent.parent
        return [f"taskvec correlate {short_name(session.name, root)}{_flag(root)}"]
    sessions = list_sessions(output_dir) if output_dir.is_dir() else []
    matching = [s for s in sessions if _same_run(s, output_dir, m)]
    if matching:
        name = short_name(matching[-1].name, output_dir)
        return [f"taskvec correlate {name} {results}{_flag(output_dir)}   # vectors vs correctness"]
    return [
        f"taskvec extract --config EXTRACTION_CONFIG   # with prompt_config: "
        f"{m.config.get('config_path')}, split: {m.split}, max_samples: {m.n_total}",
        f"taskvec correlate SESSION {results}   # SESSION: the name that extract prints",
    ]
