"""Local file loaders: every format round-trips, fields map, FinQA parses, and errors say what to fix."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from taskvec.data import DatasetConfig, FieldMap, Sample, available_splits, load_split
from taskvec.errors import TaskvecError

ROWS: list[dict[str, Any]] = [
    {
        "qid": "q-1",
        "q": "What was revenue growth?",
        "ans": "$1,234.50",
        "why": "Subtract, then divide.",
        "ctx": "a | b",
    },
    {"qid": "q-2", "q": "What was the margin?", "ans": "12%", "why": "Divide.", "ctx": ""},
    {"qid": "q-3", "q": "What was the net change?", "ans": "(3.4)", "why": "", "ctx": "Cash fell."},
]
MAPPED = FieldMap(id="qid", question="q", answer="ans", rationale="why", context="ctx")
EXPECTED = [
    Sample("q-1", "What was revenue growth?", 1234.5, "1234.50", "Subtract, then divide.", "a | b"),
    Sample("q-2", "What was the margin?", 12.0, "12", "Divide.", ""),
    Sample("q-3", "What was the net change?", -3.4, "-3.4", "", "Cash fell."),
]


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write `rows` in the format named by the extension of `path`."""
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path)
    return path


def one_line(exc: pytest.ExceptionInfo[TaskvecError]) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_each_format_round_trips_with_field_mapping(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"data{suffix}", ROWS)
    cfg = DatasetConfig(source="file", splits={"test": path}, fields=MAPPED)
    assert load_split(cfg, "test") == EXPECTED


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_explicit_format_overrides_the_extension(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path / f"data.{fmt}", ROWS)
    path = path.rename(tmp_path / "data.txt")
    cfg = DatasetConfig(source="file", path=path, format=fmt, fields=MAPPED)
    assert load_split(cfg, "all") == EXPECTED


def test_default_fields_numeric_answers_and_generated_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.json",
        [{"question": "Q one?", "answer": 2.50}, {"question": "Q two?", "answer": -7}],
    )
    samples = load_split(DatasetConfig(source="file", splits={"dev": path}), "dev")
    assert samples == [Sample("dev_0", "Q one?", 2.5, "2.5"), Sample("dev_1", "Q two?", -7.0, "-7")]


@pytest.mark.parametrize(
    "payload",
    [
        {"data": [{"question": "Q?", "answer": 1}], "version": "1"},
        {"version": "1", "examples": [{"question": "Q?", "answer": 1}]},
    ],
)
def test_json_object_holding_the_record_list(tmp_path: Path, payload: dict[str, Any]) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(payload))
    assert load_split(DatasetConfig(source="file", path=path), "all")[0].answer == 1.0


def test_list_fields_join_as_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl", [{"question": "Q?", "answer": "1", "context": ["line a", "line b"]}]
    )
    cfg = DatasetConfig(source="file", path=path, fields=FieldMap(context="context"))
    assert load_split(cfg, "all")[0].context == "line a\nline b"


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_rationale_and_context_columns_are_read_by_name(tmp_path: Path, suffix: str) -> None:
    rows = [{"id": "a", "question": "Q?", "answer": "1", "rationale": "One.", "context": "Ctx."}]
    path = write(tmp_path / f"d{suffix}", rows)
    sample = load_split(DatasetConfig(source="file", splits={"test": path}), "test")[0]
    assert (sample.id, sample.rationale, sample.context) == ("a", "One.", "Ctx.")
    mapped = DatasetConfig(
        source="file", splits={"test": path}, fields=FieldMap(context="question")
    )
    assert load_split(mapped, "test")[0].context == "Q?"  # a mapping still wins


def test_path_alone_is_split_into_disjoint_train_and_test(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", ROWS)
    cfg = DatasetConfig(source="file", path=path, fields=FieldMap(question="q", answer="ans"))
    test, train = [s.id for s in load_split(cfg, "test")], [s.id for s in load_split(cfg, "train")]
    assert (
        len(test) == 2 and len(train) == 1 and sorted(test + train) == ["row_0", "row_1", "row_2"]
    )
    assert [s.id for s in load_split(cfg, "all")] == ["row_0", "row_1", "row_2"]
    assert available_splits(cfg) == ["train", "test", "all"]
    with pytest.raises(TaskvecError, match="no split 'dev'.*train, test, all"):
        load_split(cfg, "dev")


def test_splits_map_lists_its_splits(tmp_path: Path) -> None:
    cfg = DatasetConfig(
        source="file", splits={"train": tmp_path / "a.jsonl", "dev": tmp_path / "b.jsonl"}
    )
    assert available_splits(cfg) == ["train", "dev"]


def test_relative_path_falls_back_to_base_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, elsewhere = tmp_path / "configs", tmp_path / "cwd"
    data_dir.mkdir()
    elsewhere.mkdir()
    write(data_dir / "d.jsonl", ROWS)
    monkeypatch.chdir(elsewhere)
    cfg = DatasetConfig(source="file", splits={"train": Path("d.jsonl")}, fields=MAPPED)
    assert load_split(cfg, "train", base_dir=data_dir) == EXPECTED


# --- FinQA --------------------------------------------------------------------------------

FINQA = [
    {
        "pre_text": [
            "interest rate to a variable interest rate based on the three-month libor plus 2.05% .",
            ".",
            "the company 2019s net sales increased in fiscal 2009 .",
        ],
        "post_text": ["fair value of derivative instruments is shown below .", ""],
        "filename": "ADI/2009/page_49.pdf",
        "table_ori": [
            ["", "October 31, 2009", "November 1, 2008"],
            ["Net sales", "$5,829", "$5,735"],
        ],
        "table": [["", "october 31 2009", "november 1 2008"], ["net sales", "$ 5829", "$ 5735"]],
        "qa": {
            "question": "what is the percentage change in net sales from 2008 to 2009?",
            "program": "subtract(5829, 5735), divide(#0, 5735)",
            "gold_inds": {"table_1": "the net sales of october 31 2009 is $ 5829 ;"},
            "exe_ans": 0.01639,
            "program_re": "divide(subtract(5829, 5735), 5735)",
        },
        "id": "ADI/2009/page_49.pdf-1",
    },
    {
        "pre_text": ["dividends were paid ."],
        "post_text": [],
        "table": [["", "2009"], ["dividends", "$ 1.2"]],
        "qa": {
            "question": "were dividends paid in 2009?",
            "program": "greater(1.2, const_0)",
            "exe_ans": "yes",
        },
        "id": "ADI/2009/page_50.pdf-2",
    },
]


def test_finqa_record_parses_and_yes_no_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "test.json"
    path.write_text(json.dumps(FINQA))
    with caplog.at_level(logging.WARNING):
        samples = load_split(DatasetConfig(source="finqa", splits={"test": path}), "test")
    assert "skipped 1 FinQA records" in caplog.text
    assert samples == [
        Sample(
            id="ADI/2009/page_49.pdf-1",
            question="what is the percentage change in net sales from 2008 to 2009?",
            answer=0.01639,
            answer_text="0.01639",
            rationale="Compute: subtract(5829, 5735), divide(#0, 5735).",
            context=(
                "interest rate to a variable interest rate based on the three-month libor plus 2.05% .\n"
                "the company 2019s net sales increased in fiscal 2009 .\n"
                " | october 31 2009 | november 1 2008\n"
                "net sales | $ 5829 | $ 5735\n"
                "fair value of derivative instruments is shown below ."
            ),
        )
    ]


def test_finqa_without_qa_names_the_record(tmp_path: Path) -> None:
    path = tmp_path / "test.json"
    path.write_text(json.dumps([{"id": "X/2010/page_1.pdf-3", "pre_text": [], "table": []}]))
    with pytest.raises(TaskvecError) as exc:
        load_split(DatasetConfig(source="finqa", path=path), "test")
    assert "X/2010/page_1.pdf-3" in one_line(exc) and "qa.question" in one_line(exc)


def test_finqa_with_only_yes_no_is_an_empty_split(tmp_path: Path) -> None:
    path = tmp_path / "test.json"
    path.write_text(json.dumps(FINQA[1:]))
    with pytest.raises(TaskvecError, match="no numeric FinQA questions"):
        load_split(DatasetConfig(source="finqa", path=path), "test")


# --- errors -------------------------------------------------------------------------------


def test_missing_file_names_path_and_field(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(TaskvecError) as exc:
        load_split(DatasetConfig(source="file", splits={"test": missing}), "test")
    assert str(missing) in one_line(exc) and "dataset.splits.test" in one_line(exc)
    with pytest.raises(TaskvecError, match=r"dataset\.path"):
        load_split(DatasetConfig(source="finqa", path=missing), "test")


def test_missing_relative_file_names_both_places_tried(tmp_path: Path) -> None:
    with pytest.raises(TaskvecError) as exc:
        load_split(DatasetConfig(source="file", path=Path("nope.csv")), "test", base_dir=tmp_path)
    assert "'nope.csv'" in one_line(exc) and str(tmp_path / "nope.csv") in one_line(exc)


def test_missing_file_next_to_a_config_in_the_cwd_names_one_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the config's folder is the CWD: both places are one
    with pytest.raises(TaskvecError) as exc:
        load_split(DatasetConfig(source="file", path=Path("data/x.csv")), "test", Path("."))
    assert one_line(exc) == (
        f"dataset.path: file 'data/x.csv' not found (tried '{tmp_path / 'data' / 'x.csv'}'); "
        "fix the path in `dataset.path`"
    )


def test_neither_path_nor_splits(tmp_path: Path) -> None:
    with pytest.raises(TaskvecError, match=r"dataset\.path.*dataset\.splits"):
        load_split(DatasetConfig(source="file"), "train")


def test_unknown_extension_asks_for_format(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("question,answer\nQ?,1\n")
    with pytest.raises(TaskvecError) as exc:
        load_split(DatasetConfig(source="file", path=path), "train")
    assert "dataset.format" in one_line(exc) and "data.txt" in one_line(exc)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_unknown_column_lists_available_columns(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"d{suffix}", ROWS)
    cfg = DatasetConfig(source="file", path=path, fields=FieldMap(question="q", answer="answer"))
    with pytest.raises(TaskvecError) as exc:
        load_split(cfg, "train")
    message = one_line(exc)
    assert (
        "dataset.fields.answer" in message
        and "'answer'" in message
        and "qid, q, ans, why, ctx" in message
    )


def test_unknown_split_lists_available_splits(tmp_path: Path) -> None:
    splits = {"train": write(tmp_path / "a.jsonl", ROWS), "dev": tmp_path / "b.jsonl"}
    cfg = DatasetConfig(source="file", splits=splits)
    with pytest.raises(TaskvecError) as exc:
        load_split(cfg, "test")
    assert "'test'" in one_line(exc) and "train, dev" in one_line(exc)


def test_empty_split(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(TaskvecError, match="split 'train' in .*empty.jsonl.* has no samples"):
        load_split(DatasetConfig(source="file", path=path), "train")


def test_unparseable_answer_names_the_row(tmp_path: Path) -> None:
    rows = [
        {"id": "r1", "question": "Q?", "answer": "12"},
        {"id": "r2", "question": "Q?", "answer": "twelve"},
    ]
    cfg = DatasetConfig(
        source="file", path=write(tmp_path / "d.jsonl", rows), fields=FieldMap(id="id")
    )
    with pytest.raises(TaskvecError) as exc:
        load_split(cfg, "train")
    assert (
        "'r2'" in one_line(exc)
        and "'twelve'" in one_line(exc)
        and "dataset.fields.answer" in one_line(exc)
    )


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    rows = [
        {"id": "same", "question": "Q1?", "answer": 1},
        {"id": "same", "question": "Q2?", "answer": 2},
    ]
    cfg = DatasetConfig(
        source="file", path=write(tmp_path / "d.json", rows), fields=FieldMap(id="id")
    )
    with pytest.raises(TaskvecError, match="duplicate id 'same'"):
        load_split(cfg, "train")


def test_bad_json_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "Q?", "answer": 1}\n{"question": \n')
    with pytest.raises(TaskvecError, match="line 2: not valid JSON"):
        load_split(DatasetConfig(source="file", path=path), "train")


def test_unreadable_file_names_path_and_format(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_text("not parquet")
    with pytest.raises(TaskvecError) as exc:
        load_split(DatasetConfig(source="file", path=path), "train")
    assert "d.parquet" in one_line(exc) and "as parquet" in one_line(exc)


def test_json_object_without_a_record_list(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"a": [], "b": []}))
    with pytest.raises(TaskvecError, match="under 'data'; found keys: a, b"):
        load_split(DatasetConfig(source="file", path=path), "train")
