"""predictions.jsonl as an append-only log: one whole line per finished sample, a torn last line
redone on resume.

Under torchrun rank 0 appends to predictions.jsonl and rank r > 0 to its own part,
predictions.rank{r}.jsonl, in the same directory; at the end (or when a resume starts) rank 0
merges every part into predictions.jsonl in sample order and removes the parts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from taskvec.session.atomic import save_text

LOG = "predictions.jsonl"


def _line(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False) + "\n").encode()


class PredictionLog:
    """Appends each prediction as one `write` of a whole line, flushed to disk, so a crash loses
    at most that line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def read(self, repair: bool = True) -> dict[int, dict[str, Any]]:
        """The sound lines by `sample_idx`; with `repair` a torn or unreadable tail is cut off the
        file (its samples are redone); without, the file is left as it is (a rank may still be
        writing it)."""
        if not self.path.is_file():
            return {}
        data = self.path.read_bytes()
        rows: dict[int, dict[str, Any]] = {}
        good = 0
        for line in data.splitlines(keepends=True):
            try:
                row = json.loads(line) if line.endswith(b"\n") else None
            except ValueError:
                row = None
            if not isinstance(row, dict) or not isinstance(row.get("sample_idx"), int):
                break
            rows[row["sample_idx"]] = row
            good += len(line)
        if repair and good < len(data):
            with self.path.open("r+b") as f:
                f.truncate(good)
        return rows

    def append(self, row: dict[str, Any]) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._fd, _line(row))
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finalise(self, rows: list[dict[str, Any]]) -> None:
        """Replace the log (finish order) by every row in sample order, atomically: the file a
        single run writes."""
        self.close()
        _write_sorted(self.path, {r["sample_idx"]: r for r in rows})


def _write_sorted(path: Path, rows: dict[int, dict[str, Any]]) -> None:
    save_text(path, b"".join(_line(rows[i]) for i in sorted(rows)).decode())


def log_path(directory: Path, rank: int) -> Path:
    """Where rank `rank` appends its predictions."""
    return directory / (LOG if rank == 0 else f"predictions.rank{rank}.jsonl")


def _parts(directory: Path) -> list[Path]:
    return sorted(directory.glob("predictions.rank*.jsonl"))


def read_all(directory: Path, repair: bool = True) -> dict[int, dict[str, Any]]:
    """Every sound prediction of a results directory: predictions.jsonl and each rank's part."""
    rows: dict[int, dict[str, Any]] = {}
    for path in [directory / LOG, *_parts(directory)]:
        rows.update(PredictionLog(path).read(repair))
    return rows


def merge(directory: Path, rows: dict[int, dict[str, Any]]) -> None:
    """Write `rows` to predictions.jsonl in sample order, atomically (the file a single run
    writes), then remove the ranks' parts (their rows are in it)."""
    _write_sorted(directory / LOG, rows)
    for part in _parts(directory):
        part.unlink()
