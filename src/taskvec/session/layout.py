"""Every path and file name of a session, in one place (the seed-compatible layout).

```
{output_dir}/task_vector/{name}/           config.yaml, metadata.json, prompts.jsonl,
                                           task_vectors.pt, layer_{L}.pt
{output_dir}/raw_representations/{name}/   sample_{idx:05d}.pt, vectors.safetensors
```
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

TASK_VECTOR_DIR = "task_vector"
RAW_DIR = "raw_representations"
CONSOLIDATED = "vectors.safetensors"
SAMPLE_GLOB = "sample_*.pt"


def session_name(
    tag: str | None,
    prompt_type: str,
    n_shot: int,
    split: str,
    model_short: str,
    when: datetime,
    kind: str = "task_vector",
) -> str:
    """`{tag}_{model_short}_{kind}_{YYYYmmdd_HHMMSS}`, tag defaulting to `{prompt_type}_{n_shot}shot_{split}`
    (kind: `task_vector` for extraction sessions, `results` for evaluations)."""
    stem = tag or f"{prompt_type}_{n_shot}shot_{split}"
    return f"{stem}_{model_short}_{kind}_{when:%Y%m%d_%H%M%S}"


@dataclass(frozen=True)
class SessionPaths:
    """The two directories of one session and the files in them."""

    name: str
    task_vector_dir: Path
    raw_dir: Path

    @classmethod
    def under(cls, output_dir: Path, name: str) -> SessionPaths:
        """The session `name` under `output_dir`."""
        return cls(name, output_dir / TASK_VECTOR_DIR / name, output_dir / RAW_DIR / name)

    @property
    def config(self) -> Path:
        return self.task_vector_dir / "config.yaml"

    @property
    def metadata(self) -> Path:
        return self.task_vector_dir / "metadata.json"

    @property
    def prompts(self) -> Path:
        return self.task_vector_dir / "prompts.jsonl"

    @property
    def task_vectors(self) -> Path:
        return self.task_vector_dir / "task_vectors.pt"

    def layer_file(self, layer: int) -> Path:
        return self.task_vector_dir / f"layer_{layer}.pt"

    def sample_file(self, idx: int) -> Path:
        return self.raw_dir / f"sample_{idx:05d}.pt"

    @property
    def consolidated(self) -> Path:
        return self.raw_dir / CONSOLIDATED

    def sample_idxs(self) -> list[int]:
        """Indices of the per-sample files on disk, sorted."""
        return sorted(int(p.stem.removeprefix("sample_")) for p in self.raw_dir.glob(SAMPLE_GLOB))


def writer_alive(directory: Path) -> bool:
    """Whether a live process holds `session_lock` on `directory` (a dead one's lock is gone)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's own lock
    return False
