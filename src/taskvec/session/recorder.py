"""A session's metadata.json over one run: written at the start, on success and on every kind of stop."""

from __future__ import annotations

import errno
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import torch

from taskvec.errors import Interrupted, TaskvecError
from taskvec.schemas.session import SessionMetadata
from taskvec.session.atomic import save_json
from taskvec.session.layout import SessionPaths


def ending(exc: BaseException, done: int, total: int, resume_hint: str) -> tuple[str, TaskvecError]:
    """The session status and the one-line error for a run that stopped early."""
    kept = f"{done} of {total} samples are saved"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", Interrupted(f"interrupted; {kept}; resume with: {resume_hint}")
    if isinstance(exc, torch.OutOfMemoryError):
        return "failed", TaskvecError(
            f"out of device memory; {kept}; lower `max_batch_tokens` or `batch_size` and resume "
            f"with: {resume_hint}"
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = (
            Path(exc.filename).parent
            if exc.filename and not Path(exc.filename).is_dir()
            else exc.filename
        )
        return "interrupted", TaskvecError(
            f"no space left on device in {where}; {kept}; free space and resume with: {resume_hint}"
        )
    if isinstance(exc, OSError):
        return "interrupted", TaskvecError(
            f"writing the session failed ({exc.strerror or exc}); {kept}; free space or fix the "
            f"disk and resume with: {resume_hint}"
        )
    if isinstance(exc, TaskvecError):
        return "failed", TaskvecError(f"{exc}; {kept}")
    return "failed", TaskvecError(
        f"the run failed ({exc.__class__.__name__}: {exc}); {kept}; resume with: {resume_hint}"
    )


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


class SessionRecorder:
    """Keeps metadata.json true while a run goes: `start`, then `finish` or `fail`; every write
    goes through `SessionMetadata`, the schema its readers use.

    `describe(**extra)` builds the full metadata (the run's fixed fields plus `extra`); `runs` are the
    earlier runs of a resumed session. Only the main rank records (`enabled`).
    """

    def __init__(
        self,
        paths: SessionPaths,
        describe: Callable[..., dict[str, Any]],
        runs: list[dict[str, Any]],
        enabled: bool = True,
    ) -> None:
        self.paths = paths
        self.describe = describe
        self.runs = runs
        self.enabled = enabled
        self.run: dict[str, Any] = {}
        self.fixed: dict[str, Any] = {}

    def record(self, status: str, n_saved: int, **more: Any) -> None:
        """Write metadata.json with this run ending (so far) as `status`; `more` joins the fields."""
        if not self.enabled:
            return
        self.run.update(status=status, n_saved=n_saved, ended_at=_now())
        runs = [*self.runs, self.run]
        extra = {
            "status": status,
            "created_at": runs[0]["started_at"],
            "n_saved": n_saved,
            "runs": runs,
            **self.fixed,
            **more,
        }
        save_json(
            self.paths.metadata, SessionMetadata.model_validate(self.describe(**extra)).dump()
        )

    def start(self, n_saved: int, run: dict[str, Any], **fixed: Any) -> None:
        """Record status `running` (kept if the process is killed); `run` describes this run,
        `fixed` goes in every write."""
        self.run = {"started_at": _now(), **run}
        self.fixed = fixed
        self.record("running", n_saved)

    def finish(self, n_saved: int, **more: Any) -> None:
        self.record("complete", n_saved, **more)

    def fail(self, exc: BaseException, n_saved: int, total: int, resume_hint: str) -> NoReturn:
        """Record how the run stopped and raise the one-line error that says how to resume."""
        status, error = ending(exc, n_saved, total, resume_hint)
        try:
            self.record(status, n_saved, error=str(error))
        except OSError:
            pass  # a full disk may refuse even this; the files on disk still say what is done
        raise error from exc
