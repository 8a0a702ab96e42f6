"""The one exception type shown to users as a single line, without a traceback; and visible warnings."""

import sys


class TaskvecError(Exception):
    """A user-facing error: the message names what was wrong and how to fix it."""


class Interrupted(TaskvecError):
    """The run was stopped (Ctrl-C, SIGTERM); finished work is kept and the message says how to resume."""


def warn(message: str) -> None:
    """A one-line warning on stderr for something the run works around but the user should know."""
    print(f"taskvec: warning: {message}", file=sys.stderr)
