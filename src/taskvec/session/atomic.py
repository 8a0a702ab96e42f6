"""Atomic file writes for every flow: a file is either complete or absent, never half written."""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

NEARLY_FULL = 16 * 2**20  # bytes free below which a failed write is taken for a full disk


def _file_mode() -> int:
    """The mode `open()` gives a new file (0644 under the usual umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()  # safetensors creates its files 0600; every session file gets this


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary sibling, then rename, so a file is either complete or absent.

    Writers that hide the OS error (torch.save's "unexpected pos", safetensors' "os error 28") are
    reported as the ENOSPC OSError they are when the disk turns out to be full.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}_{threading.get_ident()}")
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except Exception as exc:
        if not isinstance(exc, OSError) and shutil.disk_usage(path.parent).free < NEARLY_FULL:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path.parent)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def save_torch(path: Path, obj: Any) -> None:
    atomic_write(path, lambda p: torch.save(obj, p))


def save_text(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(path, write)


def save_json(path: Path, obj: Any) -> None:
    save_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def save_yaml(path: Path, obj: Any) -> None:
    save_text(path, yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))
