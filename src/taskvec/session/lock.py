"""The session lock: one writer at a time, and a live run told from a dead one."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from taskvec.errors import TaskvecError
from taskvec.session.layout import SessionPaths


@contextmanager
def session_lock(paths: SessionPaths) -> Iterator[None]:
    """Hold an exclusive lock on the session directory while writing it; the OS drops it if the
    process dies."""
    fd = take_lock(paths)
    try:
        yield
    finally:
        os.close(fd)


def take_lock(paths: SessionPaths) -> int:
    """Lock the session directory exclusively; the lock lasts until the returned fd is closed.

    `ls` and `show` read a `running` session whose lock nobody holds as `stopped`.
    """
    fd = os.open(paths.task_vector_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TaskvecError(
            f"session '{paths.name}' is being written by another process; wait for it or stop it "
            "first"
        ) from None
    return fd
