"""How an evaluation that stopped early ends: its status recorded and the one-line error saying how
to resume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskvec.errors import Interrupted, TaskvecError


def stopped_error(
    exc: BaseException,
    record: Callable[[str], Any] | None,
    directory: Path,
    log: Path,
    done: int,
    total: int,
) -> TaskvecError:
    """Record how the run ended (rank 0: `record`) and the one-line error saying how to resume;
    a rank other than 0 (`record` None) names its own part and its own predictions."""
    kept = f"{done} of {total} predictions are saved in {log}"
    hint = f"taskvec evaluate --resume {directory}"
    status = "interrupted" if isinstance(exc, (KeyboardInterrupt, OSError)) else "failed"
    try:
        if record is not None:
            record(status)
    except OSError:
        pass  # a full disk may refuse even this; predictions.jsonl still says what is done
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(f"interrupted; {kept}; resume with: {hint}")
    if isinstance(exc, TaskvecError):
        return TaskvecError(f"{exc}; {kept}")
    return TaskvecError(
        f"the run failed ({exc.__class__.__name__}: {exc}); {kept}; resume with: {hint}"
    )
