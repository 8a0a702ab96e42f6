"""What a report is made of: sessions, evaluation results, patching and steering results, found from the
paths given (each one such an item, or a folder holding them)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from taskvec.errors import TaskvecError
from taskvec.schemas.base import R, first_error
from taskvec.session.layout import RAW_DIR, TASK_VECTOR_DIR
from taskvec.session.reader import Session, load_session

MAX_DEPTH = 4


@dataclass
class Study:
    """Everything found, in a stable order (sorted by path)."""

    sessions: list[Session] = field(default_factory=list)
    evaluations: list[Path] = field(default_factory=list)
    patchings: list[Path] = field(default_factory=list)
    steerings: list[Path] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.sessions or self.evaluations or self.patchings or self.steerings)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TaskvecError(f"report: cannot read {path} ({exc})") from None
    if not isinstance(data, dict):
        raise TaskvecError(f"report: {path} does not hold a JSON object")
    return data


def read_record(path: Path, schema: type[R]) -> R:
    """`path` read as `schema` (metrics.json, patching.json); a file that is not one is one line."""
    try:
        return schema.model_validate(read_json(path))
    except ValidationError as exc:
        raise TaskvecError(f"report: {path} is not a {path.name} ({first_error(exc)})") from None


def _kind(folder: Path) -> str | None:
    """`session`, `evaluation`, `patching`, `steering` or None for a folder that is none of them."""
    if (folder / "metadata.json").is_file() and folder.parent.name == TASK_VECTOR_DIR:
        return "session"
    if (folder / "steering.json").is_file():
        return "steering"
    if (folder / "patching.json").is_file():
        return "patching"
    if (folder / "metrics.json").is_file() and (folder / "predictions.jsonl").is_file():
        return "evaluation"
    return None


def _walk(folder: Path, depth: int, found: dict[str, set[Path]]) -> None:
    kind = _kind(folder)
    if kind is not None:
        if not any(folder.resolve() == f.resolve() for f in found[kind]):
            found[kind].add(folder)  # as given (relative stays relative, so commands read as typed)
        return
    if depth >= MAX_DEPTH:
        return
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != RAW_DIR):
        _walk(child, depth + 1, found)


def find_items(paths: list[Path], output_dir: Path) -> Study:
    """Classify each path (a session directory or name under `output_dir`, a results directory, or a folder
    searched for them); an error names a path that holds nothing a report can show."""
    found: dict[str, set[Path]] = {
        k: set() for k in ("session", "evaluation", "patching", "steering")
    }
    for path in paths:
        if not path.exists():
            found["session"].add(load_session(path, output_dir).task_vector_dir)
            continue
        if not path.is_dir():
            raise TaskvecError(
                f"report: '{path}' is a file; pass a session, a results directory or a folder"
            )
        before = sum(map(len, found.values()))
        if path.parent.name == RAW_DIR:
            path = path.parent.parent / TASK_VECTOR_DIR / path.name
        _walk(path, 0, found)
        if sum(map(len, found.values())) == before:
            raise TaskvecError(
                f"report: '{path}' holds no session, evaluation, patching or steering results "
                f"(searched {MAX_DEPTH} folders deep)"
            )
    return Study(
        [load_session(p) for p in sorted(found["session"], key=lambda p: p.name)],
        sorted(found["evaluation"]),
        sorted(found["patching"]),
        sorted(found["steering"]),
    )
