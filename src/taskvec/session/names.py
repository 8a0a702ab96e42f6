"""Session names and statuses without torch: listing, resolving what a user typed, liveness.

`taskvec ls` and the checks that run before any weights load use these; `reader.py` opens
the session a name resolves to.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskvec.errors import TaskvecError
from taskvec.session.layout import RAW_DIR, TASK_VECTOR_DIR, SessionPaths, writer_alive

DEFAULT_OUTPUT_DIR = Path("outputs")
NAME_TIME = re.compile(r"_task_vector_(\d{8})_(\d{6})")


def close_names(word: str, names: list[str]) -> str:
    starting = [n for n in names if n.startswith(word)]
    close = list(dict.fromkeys(starting + difflib.get_close_matches(word, names, n=3, cutoff=0.5)))[
        :3
    ]
    return f"; did you mean: {', '.join(close)}?" if close else ""


@dataclass(frozen=True)
class SessionSummary:
    """One line of `taskvec ls`; fields are None where metadata.json could not be read."""

    name: str
    model_short: str | None
    prompt_type: str | None
    n_shot: int | None
    split: str | None
    n_samples: int | None
    created_at: str | None
    status: str


def live_status(task_vector_dir: Path, metadata: dict[str, Any]) -> str:
    """The recorded status, except that `running` with no live writer is `stopped`.

    A run records `running` when it starts and its ending when it ends; killed (SIGKILL, OOM,
    power loss) or unable to write its metadata (a full disk), it never records the ending.
    Its process held the session lock, which the OS drops when the process dies.
    Sessions from before status was recorded are `complete`.
    """
    status = str(metadata.get("status", "complete"))
    if status == "running" and not writer_alive(task_vector_dir):
        return "stopped"
    return status


def _created_from_name(name: str) -> str | None:
    match = NAME_TIME.search(name)
    if match is None:
        return None
    d, t = match.groups()
    return f"{d[:4]}-{d[4:6]}-{d[6:]}T{t[:2]}:{t[2:4]}:{t[4:]}"


def _summary(paths: SessionPaths) -> SessionSummary:
    name = paths.name
    try:
        meta = json.loads(paths.metadata.read_text())
        return SessionSummary(
            name,
            meta.get("model_short"),
            meta.get("prompt_type"),
            meta.get("n_shot"),
            meta.get("split"),
            meta.get("n_samples"),
            meta.get("created_at") or _created_from_name(name),
            live_status(paths.task_vector_dir, meta),
        )
    except (OSError, ValueError, AttributeError):
        return SessionSummary(
            name, None, None, None, None, None, _created_from_name(name), "unreadable"
        )


def session_names(output_dir: Path) -> list[str]:
    """Names of the sessions under `output_dir` (either of their two directories is enough)."""
    dirs = [output_dir / TASK_VECTOR_DIR, output_dir / RAW_DIR]
    return sorted({p.name for d in dirs if d.is_dir() for p in d.iterdir() if p.is_dir()})


def list_sessions(output_dir: str | Path) -> list[SessionSummary]:
    """Every session under `output_dir`, oldest first; broken ones are listed with status
    `unreadable`."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise TaskvecError(
            f"'{output_dir}' is not a directory; pass the output_dir of your extraction config"
        )
    summaries = [
        _summary(SessionPaths.under(output_dir, name)) for name in session_names(output_dir)
    ]
    return sorted(summaries, key=lambda s: (s.created_at is None, s.created_at or "", s.name))


LAST = "@last"


def _stem(summary: SessionSummary) -> str:
    """The label the analyses print: the name before `_{model_short}_task_vector_`."""
    stem = summary.name.split("_task_vector_")[0]
    return stem.removesuffix(f"_{summary.model_short}") if summary.model_short else stem


def _run_time(name: str) -> str:
    match = NAME_TIME.search(name)
    return match.group(2) if match else ""


def resolve_name(word: str, output_dir: Path) -> str:
    """The full session name `word` means under `output_dir`: the name itself, `@last` (the
    newest session), the label stem the analyses print (`vanilla_5shot_train`, or with its
    run's time `vanilla_5shot_train@051956`) or a unique prefix of the name.

    A word that means no session comes back unchanged (the caller says it is missing); one
    that means several is an error listing them.
    """
    summaries = list_sessions(output_dir) if output_dir.is_dir() else []
    names = [s.name for s in summaries]
    if word in names or not summaries:
        return word
    if word == LAST:
        return names[-1]
    stem, _, time = word.partition("@")
    matches = [
        s.name for s in summaries if _stem(s) == stem and (not time or _run_time(s.name) == time)
    ]
    matches = matches or [name for name in names if name.startswith(word)]
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (" ..." if len(matches) > 5 else "")
        raise TaskvecError(
            f"'{word}' matches {len(matches)} sessions under '{output_dir}' ({shown}); "
            "give more of "
            f"the name, the stem with its run's time (`{_stem(summaries[0])}@HHMMSS`) or `@last`"
        )
    return matches[0] if matches else word


def session_paths(path: str | Path, output_dir: str | Path | None = None) -> SessionPaths:
    """The paths of a session given by either of its directories, or by its name (or a unique
    prefix, its label stem, `@last`: see `resolve_name`) under `output_dir` (default
    `outputs`); they need not exist."""
    given = Path(path)
    if given.is_dir() and given.parent.name == RAW_DIR:
        return SessionPaths.under(given.parent.parent, given.name)
    if given.is_dir() and (
        given.parent.name == TASK_VECTOR_DIR
        or SessionPaths(given.name, given, given).metadata.exists()
    ):
        return SessionPaths(given.name, given, given.parent.parent / RAW_DIR / given.name)
    root = Path(output_dir) if output_dir is not None else DEFAULT_OUTPUT_DIR
    return SessionPaths.under(root, resolve_name(str(path), root))


def missing_session(path: str | Path, root: Path) -> str:
    """Why `path` names no session under `root`, with close names and stems (an error
    message)."""
    summaries = list_sessions(root) if root.is_dir() else []
    candidates = [s.name for s in summaries] + [_stem(s) for s in summaries]
    hint = (
        close_names(Path(path).name, candidates) if root.is_dir() else f"; '{root}' does not exist"
    )
    return (
        f"no session '{path}': it is neither a session directory nor a session name under "
        f"'{root / 'task_vector'}'{hint} "
        f"(`taskvec ls {root}` lists them)"
    )
