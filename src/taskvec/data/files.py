"""Load samples from local files: JSONL, JSON, CSV, Parquet (mapped by `FieldMap`) and FinQA JSON.

Which file serves a split: `dataset.splits` maps split names to files
(`{train: a.jsonl, test: b.jsonl}`) and then only those splits exist. With only
`dataset.path`, the file is split deterministically: a seeded draw (`dataset.seed`) of
`test_fraction` of its rows is `test`, the rest `train` (each in file order, disjoint),
and `all` serves every row; ids without an id column are `row_{file index}`, the same
in every split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from taskvec.data.base import DatasetConfig, FieldMap, Sample
from taskvec.data.numbers import format_number, normalize_number_text, parse_number
from taskvec.data.sources import Source, register
from taskvec.errors import TaskvecError

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "json", "csv", "parquet")
_EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
    ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
}  # fmt: skip
_PATH_ONLY_SPLITS = ["train", "test", "all"]

Record = Mapping[str, Any]


# --- which file ---------------------------------------------------------------------------


def _no_file(cfg: DatasetConfig) -> TaskvecError:
    return TaskvecError(
        f"source: {cfg.source} needs `dataset.path` or `dataset.splits` (split -> file); set one"
    )


def file_splits(cfg: DatasetConfig) -> list[str]:
    """The split names a file dataset offers (see the module docstring for `path` alone)."""
    if cfg.splits:
        return list(cfg.splits)
    if cfg.path is not None:
        return list(_PATH_ONLY_SPLITS)
    raise _no_file(cfg)


def split_file(cfg: DatasetConfig, split: str, base_dir: Path | None = None) -> Path:
    """The existing file holding `split`, resolved against the CWD first, then `base_dir`."""
    if cfg.splits:
        if split not in cfg.splits:
            raise TaskvecError(
                f"dataset has no split '{split}'; available splits: {', '.join(cfg.splits)} "
                "(add it under `dataset.splits`)"
            )
        return _resolve(cfg.splits[split], f"dataset.splits.{split}", base_dir)
    if cfg.path is not None:
        return _resolve(cfg.path, "dataset.path", base_dir)
    raise _no_file(cfg)


def _candidates(path: Path, base_dir: Path | None) -> list[Path]:
    """Where a data path may be, absolute: itself, or against the CWD, then against `base_dir`."""
    path = path.expanduser()
    places = [path] if path.is_absolute() or base_dir is None else [path, base_dir / path]
    return list(dict.fromkeys(Path(os.path.abspath(p)) for p in places))


def _resolve(path: Path, field: str, base_dir: Path | None) -> Path:
    candidates = _candidates(path, base_dir)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " or ".join(f"'{c}'" for c in candidates)
    raise TaskvecError(
        f"{field}: file '{path}' not found (tried {tried}); fix the path in `{field}`"
    )


def absolute_paths(cfg: DatasetConfig, base_dir: Path | None) -> DatasetConfig:
    """`cfg` with every file path that exists made absolute (as `split_file` finds it), so it
    reads from any directory."""

    def absolute(path: Path) -> Path:
        for candidate in _candidates(path, base_dir):
            if candidate.is_file():
                return candidate.resolve()
        return path.expanduser()

    splits = {name: absolute(path) for name, path in cfg.splits.items()}
    return cfg.model_copy(
        update={"path": absolute(cfg.path) if cfg.path else None, "splits": splits}
    )


def file_sha256(path: Path) -> str:
    """The SHA-256 of a data file's bytes (recorded so a resume notices an edited file)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- reading records ----------------------------------------------------------------------


def detect_format(path: Path, fmt: str) -> str:
    """`fmt` itself, or for `auto` the format named by the file extension."""
    if fmt != "auto":
        return fmt
    detected = _EXTENSIONS.get(path.suffix.lower())
    if detected is None:
        raise TaskvecError(
            f"cannot tell the format of '{path}' from its extension; set `dataset.format` to one of: "
            f"{', '.join(FORMATS)}"
        )
    return detected


def read_records(path: Path, fmt: str) -> list[Record]:
    """All rows of a data file as dicts (CSV cells stay strings, so '$1,234' survives)."""
    try:
        if fmt == "jsonl":
            return _read_jsonl(path)
        if fmt == "json":
            return _json_records(json.loads(path.read_text(encoding="utf-8")), path)
        frame = (
            pd.read_csv(path, dtype=str, keep_default_na=False)
            if fmt == "csv"
            else pd.read_parquet(path)
        )
    except (ValueError, OSError) as exc:  # JSONDecodeError, pandas/pyarrow parse errors
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TaskvecError(
            f"cannot read '{path}' as {fmt} ({first_line}); fix the file or `dataset.format`"
        ) from exc
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict("records")


def _read_jsonl(path: Path) -> list[Record]:
    records: list[Record] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskvecError(
                f"'{path}' line {number}: not valid JSON ({exc.msg}); fix the line"
            ) from exc
        if not isinstance(record, dict):
            kind = type(record).__name__
            raise TaskvecError(
                f"'{path}' line {number}: expected a JSON object per line, got {kind}; fix the line"
            )
        records.append(record)
    return records


def _json_records(data: Any, path: Path) -> list[Record]:
    """A JSON list of records, or a dict holding that list under `data` or as its only list value."""
    if isinstance(data, dict):
        lists = {key: value for key, value in data.items() if isinstance(value, list)}
        key = "data" if "data" in lists else next(iter(lists)) if len(lists) == 1 else None
        if key is None:
            raise TaskvecError(
                f"'{path}': a JSON object must hold its records as a list under 'data'; found keys: "
                f"{', '.join(data) or 'none'}"
            )
        data = lists[key]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise TaskvecError(
            f"'{path}': expected a JSON list of objects (records); fix the file or `dataset.format`"
        )
    return data


# --- records to samples -------------------------------------------------------------------


def records_to_samples(
    records: Iterable[Record],
    fields: FieldMap,
    split: str,
    where: str,
    text_answers: bool = False,
    id_prefix: str | None = None,
) -> list[Sample]:
    """Map rows to samples with `fields`; `where` names the source in error messages.

    Rows without an id column get `{id_prefix or split}_{row index}`; `text_answers`
    keeps answers as written text (`answer` None) instead of parsing numbers.
    """
    rows = list(records)
    _check_columns(rows, fields, where)
    samples = [
        _to_sample(row, i, fields, id_prefix or split, where, text_answers)
        for i, row in enumerate(rows)
    ]
    _check_unique_ids(samples, where)
    if not samples:
        raise TaskvecError(
            f"split '{split}' in {where} has no samples; point it at a non-empty file"
        )
    return samples


def _check_columns(rows: list[Record], fields: FieldMap, where: str) -> None:
    if not rows:
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for name, column in fields.model_dump().items():
        if column is not None and column not in columns:
            raise TaskvecError(
                f"dataset.fields.{name} names column '{column}', which is not in {where}; available "
                f"columns: {', '.join(columns)}; fix `dataset.fields.{name}`"
            )


def _sample_id(row: Record, index: int, fields: FieldMap, prefix: str, where: str) -> str:
    """The row's id: the `dataset.fields.id` column, else a column named `id`, else `{prefix}_{index}`."""
    column = fields.id if fields.id is not None else ("id" if "id" in row else None)
    if column is None:
        return f"{prefix}_{index}"
    if row.get(column) in (None, ""):
        raise TaskvecError(
            f"row {index} in {where} has no value in column '{column}'; fill it or set "
            "`dataset.fields.id` to another column"
        )
    return str(row[column])


def _to_sample(
    row: Record, index: int, fields: FieldMap, prefix: str, where: str, text_answers: bool
) -> Sample:
    sample_id = _sample_id(row, index, fields, prefix, where)
    question = _text(row.get(fields.question))
    if not question:
        raise TaskvecError(
            f"row '{sample_id}' in {where} has an empty question; fill it or drop the row"
        )
    raw = row.get(fields.answer)
    answer: float | None
    if text_answers:
        answer, answer_text = None, _text(raw)
        if not answer_text:
            raise TaskvecError(
                f"row '{sample_id}' in {where} has an empty answer; fill it or drop the row"
            )
    else:
        try:
            answer, answer_text = _answer(raw)
        except ValueError as exc:
            raise TaskvecError(
                f"row '{sample_id}' in {where}: cannot read answer {raw!r} as a number; fix the value, point "
                "`dataset.fields.answer` at a numeric column, or set `dataset.answer_type: text` "
                "for word answers"
            ) from exc
    return Sample(
        id=sample_id,
        question=question,
        answer=answer,
        answer_text=answer_text,
        rationale=_by_name(fields.rationale, "rationale", row),
        context=_by_name(fields.context, "context", row),
    )


def _by_name(mapped: str | None, name: str, row: Record) -> str:
    """An optional text field: from the column `dataset.fields` maps, else the one named `name`."""
    return _text(row.get(mapped if mapped is not None else name))


def _answer(raw: Any) -> tuple[float, str]:
    """The numeric answer and its plain text: written answers keep their digits, numbers get formatted."""
    if isinstance(raw, str):
        text = normalize_number_text(raw)
        return float(text), text
    if raw is None:
        raise ValueError("missing answer")
    value = parse_number(raw)
    return value, format_number(value)


def _text(value: Any) -> str:
    """A text field: None -> '', a list of lines -> joined with newlines."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\n".join(str(v) for v in value).strip()
    return str(value).strip()


def _check_unique_ids(samples: list[Sample], where: str) -> None:
    seen: set[str] = set()
    for sample in samples:
        if sample.id in seen:
            raise TaskvecError(
                f"{where} has duplicate id '{sample.id}'; ids must be unique (check `dataset.fields.id`)"
            )
        seen.add(sample.id)


def load_file_split(cfg: DatasetConfig, split: str, base_dir: Path | None = None) -> list[Sample]:
    """Samples of `split` from a JSONL/JSON/CSV/Parquet file, mapped by `dataset.fields`."""
    path = split_file(cfg, split, base_dir)
    records = read_records(path, detect_format(path, cfg.format))
    text = cfg.answer_type == "text"
    if cfg.splits:
        return records_to_samples(records, cfg.fields, split, f"'{path}'", text)
    _check_path_split(split)
    return path_split(
        records_to_samples(records, cfg.fields, split, f"'{path}'", text, id_prefix="row"),
        cfg,
        split,
        path,
    )


def _check_path_split(split: str) -> None:
    if split not in _PATH_ONLY_SPLITS:
        raise TaskvecError(
            f"dataset has no split '{split}'; `path` alone offers {', '.join(_PATH_ONLY_SPLITS)} "
            "(or map split names to files under `dataset.splits`)"
        )


def path_split(samples: list[Sample], cfg: DatasetConfig, split: str, path: Path) -> list[Sample]:
    """`split` (train, test or all) of a one-file dataset: disjoint, deterministic, each in file order."""
    if split == "all":
        return samples
    test = path_test_rows(len(samples), cfg.test_fraction, cfg.seed)
    chosen = [s for i, s in enumerate(samples) if (i in test) == (split == "test")]
    if not chosen:
        raise TaskvecError(
            f"split '{split}' of '{path}' is empty ({len(samples)} rows, test_fraction {cfg.test_fraction}); "
            "add rows or change `dataset.test_fraction`"
        )
    return chosen


def path_test_rows(n_rows: int, test_fraction: float, seed: int) -> set[int]:
    """The row indices of a one-file dataset's `test` split: a seeded draw of round(fraction * n) rows."""
    n_test = min(n_rows, max(1, round(test_fraction * n_rows)))
    return set(random.Random(f"taskvec-split:{seed}").sample(range(n_rows), n_test))


# --- FinQA --------------------------------------------------------------------------------


def load_finqa_split(cfg: DatasetConfig, split: str, base_dir: Path | None = None) -> list[Sample]:
    """Samples of `split` from a FinQA JSON file; yes/no questions are skipped with a warning.

    Context is pre_text, the table (one pipe-separated row per line) and post_text;
    the rationale shows the FinQA program, e.g. "Compute: subtract(5829, 5735), divide(#0, 5735)".
    """
    if not cfg.splits:
        _check_path_split(split)
    path = split_file(cfg, split, base_dir)
    records = read_records(path, "json")
    samples = [
        s for i, record in enumerate(records) if (s := _finqa_sample(record, i, path)) is not None
    ]
    skipped = len(records) - len(samples)
    if skipped:
        log.warning(
            "skipped %d FinQA records with non-numeric answers (yes/no) in '%s'", skipped, path
        )
    _check_unique_ids(samples, f"'{path}'")
    if not samples:
        raise TaskvecError(
            f"split '{split}' in '{path}' has no numeric FinQA questions; check the file"
        )
    return samples if cfg.splits else path_split(samples, cfg, split, path)


def _finqa_sample(record: Record, index: int, path: Path) -> Sample | None:
    """One FinQA record as a sample, or None when its answer is not a number."""
    sample_id = str(record.get("id", f"record {index}"))
    qa = record.get("qa")
    if not isinstance(qa, dict) or not qa.get("question") or "exe_ans" not in qa:
        raise TaskvecError(
            f"FinQA record '{sample_id}' in '{path}' has no qa.question/qa.exe_ans; is this a FinQA file? "
            "(use `source: file` for other JSON)"
        )
    try:
        answer = parse_number(qa["exe_ans"])
    except ValueError:
        return None
    table = "\n".join(
        " | ".join(str(cell).strip() for cell in row) for row in record.get("table", [])
    )
    parts = [
        _finqa_text(record.get("pre_text", [])),
        table,
        _finqa_text(record.get("post_text", [])),
    ]
    program = str(qa.get("program", "")).strip()
    return Sample(
        id=sample_id,
        question=str(qa["question"]).strip(),
        answer=answer,
        answer_text=format_number(answer),
        rationale=f"Compute: {program}." if program else "",
        context="\n".join(part for part in parts if part),
    )


def _finqa_text(lines: list[str]) -> str:
    """FinQA sentence lists, without the lone '.' lines the extraction left behind."""
    return "\n".join(line.strip() for line in lines if line.strip() not in ("", "."))


register(Source("file", file_splits, load_file_split, local_files=True))
register(Source("finqa", file_splits, load_finqa_split, local_files=True))
