"""Writing a session: atomic writes, the lock, the background writer of per-sample files and the
in-memory sample table."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file

from taskvec.errors import TaskvecError
from taskvec.prompts.item import Item
from taskvec.session.layout import SessionPaths
from taskvec.session.stats import RunningStats

MAX_PENDING_WRITES = 64
CONSOLIDATE_MAX_BYTES = 4 << 30  # above this the loader reads the per-sample files instead


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


def check_finite(vectors: torch.Tensor, sample_ids: list[str], dtype: torch.dtype) -> None:
    """Stop on NaN or Inf (typically float16 overflow), naming the samples."""
    bad = [
        sid
        for sid, ok in zip(sample_ids, vectors.isfinite().flatten(1).all(dim=1).tolist())
        if not ok
    ]
    if bad:
        raise TaskvecError(
            f"hidden states contain NaN or Inf for {len(bad)} sample(s): {', '.join(bad[:10])}"
            f"{' ...' if len(bad) > 10 else ''} (dtype {str(dtype).removeprefix('torch.')}: "
            "float16 overflows in some models); "
            "use `dtype: bfloat16` or `float32` in a new session"
        )


class SessionWriter:
    """Writes per-sample files on a background thread.

    Per-sample vectors are cloned so each file holds only its own data; at most
    MAX_PENDING_WRITES files wait in memory, so memory does not grow with the run.
    `n_saved` counts the samples whose files are on disk (written, or kept from before).
    """

    def __init__(self, paths: SessionPaths, keys: list[list[str]], n_saved: int = 0) -> None:
        self.paths = paths
        self.keys = keys  # keys[layer_i][pos_i]
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskvec-writer")
        self.pending: list[Future[None]] = []
        self.n_saved = n_saved

    def add(self, items: Sequence[Item], sample_ids: Sequence[str], vectors: torch.Tensor) -> None:
        """Queue a batch: `vectors` is (n, n_layers, n_positions, hidden) float32 on CPU, one row per item."""
        for item, sample_id, vecs in zip(items, sample_ids, vectors):
            record: dict[str, Any] = {
                key: vecs[li, pi].clone()
                for li, row in enumerate(self.keys)
                for pi, key in enumerate(row)
            }
            record.update(
                _sample_id=sample_id,
                _sample_idx=item.idx,
                _seq_len=len(item.ids),
                _token_indices=list(item.token_indices),
            )
            self._drain(MAX_PENDING_WRITES - 1)
            self.pending.append(
                self.pool.submit(save_torch, self.paths.sample_file(item.idx), record)
            )

    def _drain(self, keep: int) -> None:
        while len(self.pending) > keep:
            self.pending.pop(0).result()
            self.n_saved += 1

    def close(self) -> None:
        """Wait for every queued file, even after a failed one; re-raises the first write error."""
        error: BaseException | None = None
        while self.pending:
            try:
                self._drain(len(self.pending) - 1)
            except Exception as exc:  # noqa: BLE001 - keep draining, report the first
                error = error or exc
        self.pool.shutdown(wait=True)
        if error is not None:
            raise error


class SampleTable:
    """Every sample's vectors in sample order, kept in memory as batches arrive, for the task vectors and
    vectors.safetensors, so the end of a run reads nothing back from disk.

    Rows that never arrive here (another rank's samples) are read from their files at the end.
    Above CONSOLIDATE_MAX_BYTES nothing is kept: the statistics are then streamed from the files
    and no vectors.safetensors is written. Either way the statistics run over samples in order,
    in the same chunks, so they do not depend on how the run was batched, split or resumed.
    """

    def __init__(
        self,
        paths: SessionPaths,
        layers: list[int],
        keys: list[list[str]],
        idxs: list[int],
        hidden: int,
    ) -> None:
        self.paths, self.layers, self.keys, self.idxs, self.hidden = (
            paths,
            layers,
            keys,
            idxs,
            hidden,
        )
        self.flat = [key for row in keys for key in row]
        self.row = {idx: r for r, idx in enumerate(idxs)}
        fits = len(idxs) * len(self.flat) * hidden * 4 <= CONSOLIDATE_MAX_BYTES
        self.data = torch.empty(len(idxs), len(self.flat), hidden) if fits else None
        self.filled = torch.zeros(len(idxs), dtype=torch.bool)

    def put(self, idxs: Sequence[int], vectors: torch.Tensor) -> None:
        """Keep a batch: `vectors` is (n, n_layers, n_positions, hidden), one row per sample idx."""
        if self.data is not None:
            rows = [self.row[idx] for idx in idxs]
            self.data[rows] = vectors.flatten(1, 2)
            self.filled[rows] = True

    def put_record(self, record: dict[str, Any]) -> None:
        """Keep one sample read from its file (a resumed session's finished samples)."""
        self.put(
            [record["_sample_idx"]],
            torch.stack([record[key] for key in self.flat]).reshape(
                1, len(self.keys), -1, self.hidden
            ),
        )

    def _read(self, idx: int) -> torch.Tensor:
        record = torch.load(self.paths.sample_file(idx), weights_only=True)
        return torch.stack([record[key] for key in self.flat])

    def _block(self, start: int, stop: int) -> torch.Tensor:
        """Rows start..stop as (m, n_keys, hidden), reading from files what is not in memory."""
        if self.data is None:
            return torch.stack([self._read(idx) for idx in self.idxs[start:stop]])
        for r in range(start, stop):
            if not self.filled[r]:
                self.data[r] = self._read(self.idxs[r])
        return self.data[start:stop]

    def summarise(self, chunk: int = 256) -> bool:
        """Write task_vectors.pt, one layer_{L}.pt per layer and (if kept in memory) vectors.safetensors."""
        # every key at once: one (n_keys * hidden) vector per sample
        stats = RunningStats(len(self.flat) * self.hidden)
        for start in range(0, len(self.idxs), chunk):
            stats.update(self._block(start, min(start + chunk, len(self.idxs))).flatten(1))
        means, stds = (
            stats.mean.float().view(len(self.flat), -1),
            stats.std().float().view(len(self.flat), -1),
        )
        vectors = {
            k: v
            for i, key in enumerate(self.flat)
            for k, v in ((key, means[i].clone()), (f"{key}_std", stds[i].clone()))
        }
        save_torch(self.paths.task_vectors, vectors)
        for layer, row in zip(self.layers, self.keys):
            save_torch(
                self.paths.layer_file(layer),
                {k: vectors[k] for key in row for k in (key, f"{key}_std")},
            )
        if self.data is None:
            return False
        tensors = {key: self.data[:, k].contiguous() for k, key in enumerate(self.flat)}
        tensors["_sample_idx"] = torch.tensor(self.idxs, dtype=torch.int64)
        atomic_write(self.paths.consolidated, lambda p: save_file(tensors, str(p)))
        return True
