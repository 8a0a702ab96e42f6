"""The one way an extraction session is written, by `taskvec extract` and by evaluation's one pass:
the lock, the per-sample files, the task vectors and metadata.json through the recorder."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import torch

from taskvec.session.files import SessionSource, session_metadata
from taskvec.session.layout import CONSOLIDATED, SessionPaths
from taskvec.session.lock import session_lock
from taskvec.session.recorder import SessionRecorder
from taskvec.session.table import SampleTable
from taskvec.session.writer import SessionWriter, check_finite


class SessionBuilder:
    """A session being written from `source`'s samples as their vectors arrive.

    Under torchrun every rank writes its own samples' files into the one session rank 0 created
    (`paths`); the main rank holds the lock until `release` (so `ls` tells a live run from a dead
    one), keeps every vector for the task vectors and alone records metadata.json (`recorder`).
    `runs` are the earlier runs of a resumed session.
    """

    def __init__(
        self,
        source: SessionSource,
        paths: SessionPaths,
        device: torch.device,
        dtype: torch.dtype,
        main: bool,
        runs: list[dict[str, Any]] | None = None,
    ) -> None:
        self.source, self.paths, self.device, self.dtype = source, paths, device, dtype
        self.items = {it.idx: it for it in source.items}
        hidden = source.text_config.hidden_size
        idxs = [it.idx for it in source.items]
        self.table = SampleTable(paths, source.layers, source.keys, idxs, hidden) if main else None
        self.writer = SessionWriter(paths, source.keys)
        self.recorder = SessionRecorder(
            paths,
            lambda **extra: session_metadata(source, paths, device, dtype, extra),
            runs or [],
            main,
        )
        self._held = ExitStack()
        if main:
            self._held.enter_context(session_lock(paths))

    def __enter__(self) -> SessionBuilder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Let go of the lock (the main rank's); metadata.json then says how the run ended."""
        self._held.close()

    def start(self, n_kept: int, n_redone: int, world_size: int, **fixed: Any) -> None:
        """Record status `running`: the `n_kept` samples kept from an earlier run count as saved
        (on the main rank, which kept them), `n_redone` were unsound and run again; `fixed` goes
        in every write of metadata.json."""
        self.writer.n_saved = n_kept if self.recorder.enabled else 0
        run = {
            "device": str(self.device),
            "world_size": world_size,
            "n_kept": n_kept,
            "n_redone": n_redone,
            "n_to_compute": len(self.items) - n_kept,
        }
        self.recorder.start(n_kept, run, **fixed)

    def add(self, idxs: Sequence[int], vectors: torch.Tensor) -> None:
        """Check and queue finished samples: `vectors` is (n, n_layers, n_positions, hidden)
        float32 on CPU, one row per sample idx."""
        items = [self.items[idx] for idx in idxs]
        sample_ids = [self.source.samples[idx].id for idx in idxs]
        check_finite(vectors, sample_ids, self.dtype)
        self.writer.add(items, sample_ids, vectors)
        if self.table is not None:
            self.table.put(idxs, vectors)

    def finish_files(self) -> int:
        """Wait until this rank's sample files are on disk; how many it has saved."""
        self.writer.close()
        return self.writer.n_saved

    def close_files_quietly(self) -> None:
        """Wait for the files after a failure; the first error is the one reported."""
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001
            pass

    def task_vectors(self) -> str | None:
        """On the main rank, once every rank's files are written: task_vectors.pt, one file per
        layer and, when the vectors fit in memory, the consolidated file, whose name is returned
        (metadata `consolidated`; None when not written)."""
        return CONSOLIDATED if self.table is not None and self.table.summarise() else None
