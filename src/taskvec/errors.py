"""The one exception type shown to users as a single line, without a traceback; SIGTERM taken as
Ctrl-C; visible warnings."""

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TaskvecError(Exception):
    """A user-facing error: the message names what was wrong and how to fix it."""


class Interrupted(TaskvecError):
    """The run was stopped (Ctrl-C, SIGTERM); finished work is kept and the message says how to resume."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler's kill) like Ctrl-C, so the run ends cleanly and can be resumed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def warn(message: str) -> None:
    """A one-line warning on stderr for something the run works around but the user should know."""
    print(f"taskvec: warning: {message}", file=sys.stderr)
