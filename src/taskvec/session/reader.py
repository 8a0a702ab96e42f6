"""Open sessions written by `taskvec extract`: metadata, task vectors and per-sample vectors.

A session lives in two directories, `{output_dir}/task_vector/{name}` (metadata, config,
task vectors, prompts) and `{output_dir}/raw_representations/{name}` (one file per sample,
plus `vectors.safetensors`, one (n, hidden) tensor per key, once a run completes).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open

from taskvec.errors import TaskvecError
from taskvec.model.identity import recorded_identity
from taskvec.positions import VectorKey
from taskvec.session.layout import CONSOLIDATED, RAW_DIR, TASK_VECTOR_DIR, SessionPaths
from taskvec.session.store import writer_alive
from taskvec.session.vector import TaskVector

DEFAULT_OUTPUT_DIR = Path("outputs")
NAME_TIME = re.compile(r"_task_vector_(\d{8})_(\d{6})")


def close_names(word: str, names: list[str]) -> str:
    starting = [n for n in names if n.startswith(word)]
    close = list(dict.fromkeys(starting + difflib.get_close_matches(word, names, n=3, cutoff=0.5)))[
        :3
    ]
    return f"; did you mean: {', '.join(close)}?" if close else ""


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
        if "keys" in self.metadata:
            return list(self.metadata["keys"])
        return [
            str(VectorKey(layer, p))
            for layer in self.metadata["layers"]
            for p in self.metadata["token_positions"]
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
            recorded_identity(self.metadata) or str(self.metadata.get("model")),
            int(self.metadata["hidden_size"]),
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
        ids = self.metadata["sample_ids"]
        id_of = dict(zip(self.metadata.get("sample_idxs", range(len(ids))), ids))
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
        meta = self.metadata
        timings = meta.get("timings") or {}
        return [
            ("session", self.name),
            ("status", self._status_line()),
            (
                "model",
                f"{meta.get('model')} ({meta.get('model_short')}, {meta.get('n_model_layers')} blocks)",
            ),
            (
                "prompts",
                f"{meta.get('prompt_type')}, {meta.get('n_shot')}-shot ({meta.get('prompt_config')})",
            ),
            ("split", str(meta.get("split"))),
            (
                "samples",
                f"{len(self.sample_idx)} of {meta.get('n_samples')} have vectors"
                + (
                    f" ({len(meta['skipped'])} skipped: position out of range)"
                    if meta.get("skipped")
                    else ""
                ),
            ),
            ("layers", ", ".join(map(str, self.layers))),
            ("positions", ", ".join(self.positions)),
            ("keys", f"{len(self.keys)}: {', '.join(self.keys)}"),
            ("hidden size", str(meta.get("hidden_size"))),
            ("dtype, device", f"{meta.get('dtype')}, {meta.get('device')}"),
            ("created", str(meta.get("created_at"))),
            (
                "timings",
                ", ".join(f"{k} {v:.3g}" for k, v in timings.items() if isinstance(v, (int, float)))
                or "-",
            ),
            *self._where(),
        ]

    def _status_line(self) -> str:
        if self.status != "stopped":
            return self.status
        return (
            "stopped (recorded as running, but no live process writes it: it was killed, or "
            "could not record its ending, e.g. on a full disk)"
        )

    def _where(self) -> list[tuple[str, str]]:
        """Where the vectors are; for an unfinished session, that the task vectors are missing
        and how to resume."""
        raw = (
            "per-sample vectors",
            f"{self.raw_dir}" + (f" (+ {CONSOLIDATED})" if self.vectors_file.exists() else ""),
        )
        if self.status == "complete":
            return [("task vectors", str(self.task_vector_dir)), raw]
        config = self.paths.config
        return [
            (
                "task vectors",
                f"not written: the session is {self.status} ({len(self.sample_idx)} per-sample files saved)",
            ),
            raw,
            ("resume with", f"taskvec extract --config {config} --resume {self.task_vector_dir}"),
        ]

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
        hidden = int(self.metadata.get("hidden_size", 0))
        for key in self.keys:
            rows = [r[key] for r in records]
            self._vectors[key] = torch.stack(rows) if rows else torch.empty(0, hidden)


@dataclass(frozen=True)
class SessionSummary:
    """One line of `taskvec ls`; fields are None where metadata.json could not be read."""

    name: str
    model_short: str | None
    prompt_type: str | None
    n_shot: int | None
    split: str | None
    n_samples: int | None
    created_at: str | None
    status: str


def live_status(task_vector_dir: Path, metadata: dict[str, Any]) -> str:
    """The recorded status, except that `running` with no live writer is `stopped`.

    A run records `running` when it starts and its ending when it ends; killed (SIGKILL, OOM,
    power loss) or unable to write its metadata (a full disk), it never records the ending.
    Its process held the session lock, which the OS drops when the process dies.
    Sessions from before status was recorded are `complete`.
    """
    status = str(metadata.get("status", "complete"))
    if status == "running" and not writer_alive(task_vector_dir):
        return "stopped"
    return status


def _created_from_name(name: str) -> str | None:
    match = NAME_TIME.search(name)
    if match is None:
        return None
    d, t = match.groups()
    return f"{d[:4]}-{d[4:6]}-{d[6:]}T{t[:2]}:{t[2:4]}:{t[4:]}"


def _summary(paths: SessionPaths) -> SessionSummary:
    name = paths.name
    try:
        meta = json.loads(paths.metadata.read_text())
        return SessionSummary(
            name,
            meta.get("model_short"),
            meta.get("prompt_type"),
            meta.get("n_shot"),
            meta.get("split"),
            meta.get("n_samples"),
            meta.get("created_at") or _created_from_name(name),
            live_status(paths.task_vector_dir, meta),
        )
    except (OSError, ValueError, AttributeError):
        return SessionSummary(
            name, None, None, None, None, None, _created_from_name(name), "unreadable"
        )


def session_names(output_dir: Path) -> list[str]:
    """Names of the sessions under `output_dir` (either of their two directories is enough)."""
    dirs = [output_dir / TASK_VECTOR_DIR, output_dir / RAW_DIR]
    return sorted({p.name for d in dirs if d.is_dir() for p in d.iterdir() if p.is_dir()})


def list_sessions(output_dir: str | Path) -> list[SessionSummary]:
    """Every session under `output_dir`, oldest first; broken ones are listed with status `unreadable`."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise TaskvecError(
            f"'{output_dir}' is not a directory; pass the output_dir of your extraction config"
        )
    summaries = [
        _summary(SessionPaths.under(output_dir, name)) for name in session_names(output_dir)
    ]
    return sorted(summaries, key=lambda s: (s.created_at is None, s.created_at or "", s.name))


LAST = "@last"


def _stem(summary: SessionSummary) -> str:
    """The label the analyses print: the name before `_{model_short}_task_vector_`."""
    stem = summary.name.split("_task_vector_")[0]
    return stem.removesuffix(f"_{summary.model_short}") if summary.model_short else stem


def _run_time(name: str) -> str:
    match = NAME_TIME.search(name)
    return match.group(2) if match else ""


def resolve_name(word: str, output_dir: Path) -> str:
    """The full session name `word` means under `output_dir`: the name itself, `@last` (the
    newest session), the label stem the analyses print (`vanilla_5shot_train`, or with its
    run's time `vanilla_5shot_train@051956`) or a unique prefix of the name.

    A word that means no session comes back unchanged (the caller says it is missing); one
    that means several is an error listing them.
    """
    summaries = list_sessions(output_dir) if output_dir.is_dir() else []
    names = [s.name for s in summaries]
    if word in names or not summaries:
        return word
    if word == LAST:
        return names[-1]
    stem, _, time = word.partition("@")
    matches = [
        s.name for s in summaries if _stem(s) == stem and (not time or _run_time(s.name) == time)
    ]
    matches = matches or [name for name in names if name.startswith(word)]
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (" ..." if len(matches) > 5 else "")
        raise TaskvecError(
            f"'{word}' matches {len(matches)} sessions under '{output_dir}' ({shown}); give more of "
            f"the name, the stem with its run's time (`{_stem(summaries[0])}@HHMMSS`) or `@last`"
        )
    return matches[0] if matches else word


def session_paths(path: str | Path, output_dir: str | Path | None = None) -> SessionPaths:
    """The paths of a session given by either of its directories, or by its name (or a unique
    prefix, its label stem, `@last`: see `resolve_name`) under `output_dir` (default
    `outputs`); they need not exist."""
    given = Path(path)
    if given.is_dir() and given.parent.name == RAW_DIR:
        return SessionPaths.under(given.parent.parent, given.name)
    if given.is_dir() and (
        given.parent.name == TASK_VECTOR_DIR
        or SessionPaths(given.name, given, given).metadata.exists()
    ):
        return SessionPaths(given.name, given, given.parent.parent / RAW_DIR / given.name)
    root = Path(output_dir) if output_dir is not None else DEFAULT_OUTPUT_DIR
    return SessionPaths.under(root, resolve_name(str(path), root))


def missing_session(path: str | Path, root: Path) -> str:
    """Why `path` names no session under `root`, with close names and stems, for an error message."""
    summaries = list_sessions(root) if root.is_dir() else []
    candidates = [s.name for s in summaries] + [_stem(s) for s in summaries]
    hint = (
        close_names(Path(path).name, candidates) if root.is_dir() else f"; '{root}' does not exist"
    )
    return (
        f"no session '{path}': it is neither a session directory nor a session name under "
        f"'{root / 'task_vector'}'{hint} "
        f"(`taskvec ls {root}` lists them)"
    )


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
