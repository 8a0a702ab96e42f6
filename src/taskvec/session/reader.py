"""Open sessions written by `taskvec extract`: metadata, task vectors and per-sample vectors.

A session lives in two directories, `{output_dir}/task_vector/{name}` (metadata, config,
task vectors, prompts) and `{output_dir}/raw_representations/{name}` (one file per sample,
plus `vectors.safetensors`, one (n, hidden) tensor per key, once a run completes).
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import ValidationError
from safetensors import safe_open

from taskvec.errors import TaskvecError
from taskvec.model.identity import recorded_identity
from taskvec.positions import VectorKey
from taskvec.schemas.base import first_error
from taskvec.schemas.session import SessionMetadata
from taskvec.session.layout import SessionPaths
from taskvec.session.names import (
    DEFAULT_OUTPUT_DIR,
    SessionSummary,
    close_names,
    list_sessions,
    live_status,
    missing_session,
    session_paths,
)
from taskvec.session.summary import describe
from taskvec.session.vector import TaskVector

__all__ = ["Session", "SessionSummary", "list_sessions", "load_session"]


class Session:
    """One extraction session, read lazily: nothing but metadata.json is read until it is asked for."""

    def __init__(self, task_vector_dir: Path, raw_dir: Path) -> None:
        self.paths = SessionPaths(task_vector_dir.name, task_vector_dir, raw_dir)
        self.task_vector_dir = task_vector_dir
        self.raw_dir = raw_dir
        self.name = task_vector_dir.name
        self._vectors: dict[str, torch.Tensor] = {}
        try:
            self.metadata: dict[str, Any] = json.loads(self.paths.metadata.read_text())
        except (OSError, ValueError) as exc:
            raise TaskvecError(
                f"session '{self.name}': cannot read {self.paths.metadata} ({exc})"
            ) from None

    @cached_property
    def info(self) -> SessionMetadata:
        """metadata.json as its typed model (`metadata` is the same file as a plain dict)."""
        try:
            return SessionMetadata.model_validate(self.metadata)
        except ValidationError as exc:
            raise TaskvecError(
                f"session '{self.name}': {self.paths.metadata} is not a session's metadata "
                f"({first_error(exc)})"
            ) from None

    def __repr__(self) -> str:
        samples = f"{len(self.sample_ids)}/{self.metadata.get('n_samples')}"
        return f"Session({self.name!r}, status={self.status!r}, samples={samples})"

    @property
    def status(self) -> str:
        """`running`, `stopped`, `interrupted`, `failed` or `complete` (see `live_status`)."""
        return live_status(self.task_vector_dir, self.metadata)

    @cached_property
    def config(self) -> dict[str, Any]:
        """The resolved extraction config (prompt config inlined); it re-runs as it is."""
        return yaml.safe_load(self.paths.config.read_text())

    @cached_property
    def keys(self) -> list[str]:
        """Vector keys in extraction order (layer-major), without the `_std` keys."""
        if self.info.keys is not None:
            return list(self.info.keys)
        return [
            str(VectorKey(layer, p))
            for layer in self.info.layers
            for p in self.info.token_positions
        ]

    @property
    def vector_keys(self) -> list[VectorKey]:
        """`keys` as typed keys (layer, position)."""
        return [VectorKey.parse(k) for k in self.keys]

    @property
    def layers(self) -> list[int]:
        return list(dict.fromkeys(k.layer for k in self.vector_keys))

    @property
    def positions(self) -> list[str]:
        """Positions as written (`last`, `-2`), in extraction order."""
        return list(dict.fromkeys(str(k.position) for k in self.vector_keys))

    @cached_property
    def task_vectors(self) -> dict[str, torch.Tensor]:
        """`{key: mean, key_std: std}` from task_vectors.pt; only complete sessions have it."""
        path = self.paths.task_vectors
        if self.status != "complete":
            when = "once its run ends, " if self.status == "running" else ""
            raise TaskvecError(
                f"session '{self.name}' is {self.status}, not complete, so it has no task vectors "
                f"yet; {when}finish it with "
                f"`taskvec extract --config {self.paths.config} --resume {self.name}`"
            )
        if not path.exists():
            raise TaskvecError(f"session '{self.name}' is marked complete but {path} is missing")
        return torch.load(path, weights_only=True)

    def mean(self, key: str) -> torch.Tensor:
        """The task vector of `key`: (hidden,) mean over samples."""
        return self.task_vectors[self.check_key(key)]

    def std(self, key: str) -> torch.Tensor:
        """(hidden,) standard deviation over samples (correction=1)."""
        return self.task_vectors[f"{self.check_key(key)}_std"]

    def task_vector(self, position: str | int = "last") -> TaskVector:
        """The mean vectors at `position` of every layer extracted there, as a `TaskVector`."""
        wanted = str(position)
        if wanted not in self.positions:
            raise TaskvecError(
                f"session '{self.name}' has no position '{wanted}'; it has "
                f"{', '.join(self.positions)} (pass one of them as position)"
            )
        keys = [key for key in self.vector_keys if str(key.position) == wanted]
        return TaskVector(
            {key.layer: self.mean(str(key)) for key in keys},
            wanted,
            recorded_identity(self.metadata) or self.info.model,
            self.info.hidden_size,
            self.name,
            (self.name,),
        )

    def check_key(self, key: str) -> str:
        if key not in self.keys:
            raise TaskvecError(
                f"session '{self.name}' has no key '{key}'{close_names(key, self.keys)} (keys: "
                f"{', '.join(self.keys)})"
            )
        return key

    @cached_property
    def prompts(self) -> list[dict[str, Any]]:
        """prompts.jsonl: sample_idx, sample_id, prompt, n_tokens, add_special_tokens, demo_ids."""
        lines = self.paths.prompts.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    @property
    def vectors_file(self) -> Path:
        return self.paths.consolidated

    @cached_property
    def sample_idx(self) -> list[int]:
        """Indices of the samples that have vectors, ascending (an interrupted run has only some)."""
        if self.vectors_file.exists():
            with safe_open(self.vectors_file, framework="pt") as f:
                return sorted(f.get_tensor("_sample_idx").tolist())
        return self.paths.sample_idxs()

    @property
    def sample_ids(self) -> list[str]:
        """Ids of the samples that have vectors, in sample_idx order (the rows of `vectors`)."""
        # one per extracted sample; `sample_idxs` gives their idx when samples were skipped
        ids, idxs = self.info.sample_ids, self.info.sample_idxs
        id_of = dict(zip(range(len(ids)) if idxs is None else idxs, ids))
        return [id_of[i] for i in self.sample_idx]

    def vectors(self, key: str) -> torch.Tensor:
        """(n_samples, hidden) float32 per-sample vectors of `key`, rows in sample_idx order; cached."""
        self.check_key(key)
        if key not in self._vectors:
            if self.vectors_file.exists():
                self._read_consolidated(key)
            else:
                self._read_sample_files()
        return self._vectors[key]

    def describe(self) -> list[tuple[str, str]]:
        """(field, value) lines that summarise the session for people (`taskvec show`)."""
        return describe(self)

    def _read_consolidated(self, key: str) -> None:
        """Read one key from vectors.safetensors (only that tensor is read from disk)."""
        with safe_open(self.vectors_file, framework="pt") as f:
            order = f.get_tensor("_sample_idx").argsort()
            self._vectors[key] = f.get_tensor(key)[order]

    def _read_sample_files(self) -> None:
        """Read every sample_{idx}.pt once and cache all keys (the fallback for runs without
        vectors.safetensors)."""
        records = [
            torch.load(self.paths.sample_file(i), weights_only=True) for i in self.sample_idx
        ]
        hidden = self.info.hidden_size
        for key in self.keys:
            rows = [r[key] for r in records]
            self._vectors[key] = torch.stack(rows) if rows else torch.empty(0, hidden)


def load_session(path: str | Path, output_dir: str | Path | None = None) -> Session:
    """Open a session from its task_vector dir, its raw_representations dir, or its name under
    `output_dir`."""
    paths = session_paths(path, output_dir)
    if not paths.task_vector_dir.is_dir():
        raise TaskvecError(
            missing_session(
                path, Path(output_dir) if output_dir is not None else DEFAULT_OUTPUT_DIR
            )
        )
    return Session(paths.task_vector_dir, paths.raw_dir)
