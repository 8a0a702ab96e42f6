"""Every sample's vectors in memory as a run goes, and the task vectors computed from them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from safetensors.torch import save_file

from taskvec.session.atomic import atomic_write, save_torch
from taskvec.session.layout import SessionPaths
from taskvec.session.stats import RunningStats

CONSOLIDATE_MAX_BYTES = 4 << 30  # above this the loader reads the per-sample files instead


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
