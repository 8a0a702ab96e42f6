"""predictions.jsonl as an append-only log: one whole line per finished sample, a torn last line
redone on resume."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from taskvec.session.store import save_text


def _line(row: dict[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False) + "\n").encode()


class PredictionLog:
    """Appends each prediction as one `write` of a whole line, flushed to disk, so a crash loses
    at most that line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def read(self) -> dict[int, dict[str, Any]]:
        """The sound lines by `sample_idx`; a torn or unreadable tail is cut off the file (its
        samples are redone)."""
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
        if good < len(data):
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
        save_text(
            self.path,
            b"".join(_line(r) for r in sorted(rows, key=lambda r: r["sample_idx"])).decode(),
        )
