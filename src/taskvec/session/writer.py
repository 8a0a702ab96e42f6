"""Per-sample files written on a background thread, so the device never waits for the disk."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from taskvec.errors import TaskvecError
from taskvec.prompts.item import Item
from taskvec.session.atomic import save_torch
from taskvec.session.layout import SessionPaths

MAX_PENDING_WRITES = 64


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
