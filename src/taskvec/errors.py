"""The one exception type shown to users as a single line, without a traceback."""


class TaskvecError(Exception):
    """A user-facing error: the message names what was wrong and how to fix it."""


class Interrupted(TaskvecError):
    """The run was stopped (Ctrl-C, SIGTERM); finished work is kept and the message says how to resume."""
