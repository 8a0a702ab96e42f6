"""A session summarised for people: the (field, value) lines `taskvec show` prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskvec.session.layout import CONSOLIDATED

if TYPE_CHECKING:
    from taskvec.session.reader import Session


def describe(session: Session) -> list[tuple[str, str]]:
    """(field, value) lines that summarise the session for people (`taskvec show`)."""
    meta = session.info
    return [
        ("session", session.name),
        ("status", _status_line(session)),
        ("model", f"{meta.model} ({meta.model_short}, {meta.n_model_layers} blocks)"),
        ("prompts", f"{meta.prompt_type}, {meta.n_shot}-shot ({meta.prompt_config})"),
        ("split", meta.split),
        (
            "samples",
            f"{len(session.sample_idx)} of {meta.n_samples} have vectors"
            + (f" ({len(meta.skipped)} skipped: position out of range)" if meta.skipped else ""),
        ),
        ("layers", ", ".join(map(str, session.layers))),
        ("positions", ", ".join(session.positions)),
        ("keys", f"{len(session.keys)}: {', '.join(session.keys)}"),
        ("hidden size", str(meta.hidden_size)),
        ("dtype, device", f"{meta.dtype}, {meta.device}"),
        ("created", str(meta.created_at)),
        (
            "timings",
            ", ".join(
                f"{k} {v:.3g}" for k, v in meta.timings.items() if isinstance(v, (int, float))
            )
            or "-",
        ),
        *_where(session),
    ]


def _status_line(session: Session) -> str:
    if session.status != "stopped":
        return session.status
    return (
        "stopped (recorded as running, but no live process writes it: it was killed, or "
        "could not record its ending, e.g. on a full disk)"
    )


def _where(session: Session) -> list[tuple[str, str]]:
    """Where the vectors are; for an unfinished session, that the task vectors are missing
    and how to resume."""
    raw = (
        "per-sample vectors",
        f"{session.raw_dir}" + (f" (+ {CONSOLIDATED})" if session.vectors_file.exists() else ""),
    )
    if session.status == "complete":
        return [("task vectors", str(session.task_vector_dir)), raw]
    config = session.paths.config
    return [
        (
            "task vectors",
            f"not written: the session is {session.status} "
            f"({len(session.sample_idx)} per-sample files saved)",
        ),
        raw,
        ("resume with", f"taskvec extract --config {config} --resume {session.task_vector_dir}"),
    ]
