"""Output directories that never overwrite: a taken name gets a `_2`, `_3`... suffix."""

from __future__ import annotations

import os
from pathlib import Path

from taskvec.errors import TaskvecError
from taskvec.session.layout import SessionPaths


def check_writable(output_dir: Path) -> None:
    """Fail before any work if `output_dir` cannot hold a session."""
    probe = output_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise TaskvecError(
            f"output_dir: '{output_dir}' is not writable (checked '{probe}'); choose another `output_dir`"
        )


def create_session(output_dir: Path, base: str) -> SessionPaths:
    """Create both session directories exclusively; a taken name gets a `_2`, `_3`... suffix."""
    for attempt in range(1, 1000):
        name = base if attempt == 1 else f"{base}_{attempt}"
        paths = SessionPaths.under(output_dir, name)
        paths.task_vector_dir.parent.mkdir(parents=True, exist_ok=True)
        paths.raw_dir.parent.mkdir(parents=True, exist_ok=True)
        if paths.raw_dir.exists():
            continue
        try:
            paths.task_vector_dir.mkdir()
        except FileExistsError:
            continue
        paths.raw_dir.mkdir()
        return paths
    raise TaskvecError(f"output_dir: could not find a free session name for '{base}'")


def create_unique_dir(parent: Path, base: str) -> Path:
    """Create `parent/base` exclusively; a taken name gets a `_2`, `_3`... suffix (never overwrites)."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        path = parent / (base if attempt == 1 else f"{base}_{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise TaskvecError(
        f"output_dir: could not find a free directory name for '{base}' in '{parent}'"
    )
