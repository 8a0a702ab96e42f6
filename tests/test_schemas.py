"""The schemas of what the flows write: files written before the schemas existed read back, and
a file read and written again is the same bytes (the writers go through the same models)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from taskvec.errors import TaskvecError
from taskvec.schemas.base import Record
from taskvec.schemas.metrics import Metrics
from taskvec.schemas.patching import PatchSummary
from taskvec.schemas.session import SessionMetadata
from taskvec.session.reader import Session

BEFORE = Path(__file__).parent / "fixtures" / "written_before_schemas"
FILES: list[tuple[str, type[Record]]] = [
    ("metadata.json", SessionMetadata),
    ("metadata_one_pass.json", SessionMetadata),
    ("metrics.json", Metrics),
    ("patching.json", PatchSummary),
]


@pytest.mark.parametrize(("name", "schema"), FILES)
def test_a_file_written_before_reads_and_writes_back_byte_for_byte(
    name: str, schema: type[Record]
) -> None:
    text = (BEFORE / name).read_text()
    record = schema.read(BEFORE / name)
    assert json.dumps(record.dump(), indent=2, default=str) + "\n" == text


def test_typed_fields_of_the_files_written_before() -> None:
    meta = SessionMetadata.read(BEFORE / "metadata.json")
    assert (meta.layers, meta.token_positions, meta.n_samples) == (
        [0, 2, 3],
        ["last", -2, "first"],
        12,
    )
    assert meta.strategy == "cot 5-shot" and meta.engine and meta.engine["prefix_cache"] == "auto"
    assert SessionMetadata.read(BEFORE / "metadata_one_pass.json").evaluation_results
    metrics = Metrics.read(BEFORE / "metrics.json")
    assert metrics.n_samples == 5 and metrics.generation["prefix_cache"] is True
    patching = PatchSummary.read(BEFORE / "patching.json")
    assert patching.dev.layers == [0, 3] and set(patching.dev.task_vector) == {0, 3}
    assert [t.task for t in patching.per_task] == patching.tasks == ["direction", "above_one"]


def test_a_seed_session_with_only_the_required_fields_reads_with_defaults() -> None:
    seed = {
        "session_name": "s",
        "model": "m",
        "n_samples": 2,
        "layers": [1],
        "token_positions": ["last"],
        "prompt_type": "vanilla",
        "split": "train",
        "hidden_size": 8,
        "sample_ids": ["a", "b"],
        "from_a_newer_release": {"kept": True},
    }
    meta = SessionMetadata.model_validate(seed)
    assert meta.status == "complete" and meta.keys is None and meta.sample_idxs is None
    assert meta.skipped == [] and meta.timings == {}
    assert meta.dump() == seed  # nothing added, the unknown key kept
    del seed["hidden_size"]
    with pytest.raises(ValidationError, match="hidden_size"):
        SessionMetadata.model_validate(seed)


def _session(tmp_path: Path, meta: dict[str, object]) -> Session:
    tv, raw = tmp_path / "task_vector" / "s", tmp_path / "raw_representations" / "s"
    tv.mkdir(parents=True)
    raw.mkdir(parents=True)
    (tv / "metadata.json").write_text(json.dumps(meta))
    return Session(tv, raw)


def test_a_session_reads_its_typed_metadata(tmp_path: Path) -> None:
    shutil.copy(BEFORE / "metadata.json", tmp_path / "m.json")
    meta = json.loads((tmp_path / "m.json").read_text())
    session = _session(tmp_path, {**meta, "keys": None})
    assert session.info.layers == [0, 2, 3]
    # without `keys`: every layer x position, as sessions before keys were recorded
    assert session.keys == [
        f"layer_{la}_pos_{p}" for la in (0, 2, 3) for p in ("last", -2, "first")
    ]
    broken = _session(tmp_path / "broken", {k: v for k, v in meta.items() if k != "layers"})
    with pytest.raises(
        TaskvecError, match="is not a session's metadata \\(layers: Field required\\)"
    ):
        _ = broken.info
