"""Resuming a session: find it, check it was made by the same config, keep the samples that are sound."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from taskvec.errors import TaskvecError
from taskvec.model.identity import model_identity
from taskvec.prompts.item import Item
from taskvec.session.layout import SessionPaths
from taskvec.session.names import missing_session, session_paths

# Fields that change how the work is scheduled, never what it computes.
EXECUTION_FIELDS = frozenset(
    {"batch_size", "max_batch_tokens", "prefix_cache", "batching", "device", "output_dir"}
)


def locate_session(spec: str, output_dir: Path) -> SessionPaths:
    """A session from its `task_vector/` or `raw_representations/` directory, or its name under
    `output_dir`."""
    paths = session_paths(spec, output_dir)
    if not paths.config.is_file() or not paths.raw_dir.is_dir():
        raise TaskvecError(f"--resume: {missing_session(spec, output_dir)}")
    return paths


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _flatten(sub, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), value


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`field: session X, now Y` for every result-affecting field that differs (dotted names).

    A `model` is compared by `model_identity`: the alias and the path of the same file agree.
    """
    old = {k: v for k, v in _flatten(saved) if k.split(".")[0] not in EXECUTION_FIELDS}
    new = {k: v for k, v in _flatten(current) if k.split(".")[0] not in EXECUTION_FIELDS}
    return [
        f"{k}: session {old.get(k)!r}, now {new.get(k)!r}"
        for k in sorted(old.keys() | new.keys())
        if _canonical(k, old.get(k)) != _canonical(k, new.get(k))
    ]


def _canonical(field: str, value: Any) -> Any:
    is_model = field == "model" or field.endswith(".model")
    return model_identity(value) if is_model and isinstance(value, str) else value


def check_matches(
    paths: SessionPaths, resolved: dict[str, Any], prompts: list[tuple[str, str]]
) -> dict[str, Any]:
    """Refuse to resume unless config and prompts equal the session's; returns its metadata."""
    saved = yaml.safe_load(paths.config.read_text())
    diffs = config_differences(saved, resolved)
    if diffs:
        raise TaskvecError(
            f"--resume: the config differs from session '{paths.name}' in {len(diffs)} field(s): "
            f"{'; '.join(diffs[:5])}"
            f"{' ...' if len(diffs) > 5 else ''}; resume with the session's own config ({paths.config})"
        )
    lines = paths.prompts.read_text().splitlines()
    written = [(row["sample_id"], row["prompt"]) for row in map(json.loads, lines)]
    for i, (then, now) in enumerate(zip(written, prompts)):
        if then != now:
            raise TaskvecError(
                f"--resume: prompt {i} ('{now[0]}') differs from the session's ('{then[0]}'); the "
                "dataset or tokenizer "
                "changed since, so the session cannot be continued; start a new one"
            )
    if len(written) != len(prompts):
        raise TaskvecError(
            f"--resume: the session has {len(written)} prompts, this config gives {len(prompts)}; "
            "start a new one"
        )
    meta_path = paths.metadata
    metadata: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if metadata.get("status") == "complete":
        raise TaskvecError(
            f"--resume: session '{paths.name}' is already complete; nothing to resume"
        )
    return metadata


def load_sound(
    path: Path, item: Item, sample_id: str, keys: list[str], hidden: int
) -> dict[str, Any] | None:
    """The record in `path` if it loads and is exactly what this item would produce in shape and identity."""
    try:
        record = torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file is redone
        return None
    identity = {
        "_sample_id": sample_id,
        "_sample_idx": item.idx,
        "_seq_len": len(item.ids),
        "_token_indices": list(item.token_indices),
    }
    if not isinstance(record, dict) or any(record.get(k) != v for k, v in identity.items()):
        return None
    for key in keys:
        vec = record.get(key)
        if (
            not isinstance(vec, torch.Tensor)
            or vec.shape != (hidden,)
            or vec.dtype != torch.float32
            or not vec.isfinite().all()
        ):
            return None
    return record


def sound_samples(
    paths: SessionPaths, items: list[Item], sample_ids: dict[int, str], keys: list[str], hidden: int
) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """Each finished sample with its record, or None where its file was unsound (deleted, so it is redone)."""
    for stale in paths.raw_dir.glob(".sample_*.tmp*"):
        stale.unlink(missing_ok=True)
    for item in items:
        path = paths.sample_file(item.idx)
        if path.exists():
            record = load_sound(path, item, sample_ids[item.idx], keys, hidden)
            if record is None:
                path.unlink()
            yield item.idx, record
