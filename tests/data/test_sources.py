"""The dataset-source registry: a new source is one registration, and the flows read its
capabilities instead of its name."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from taskvec.data import DatasetConfig, Sample, available_splits, load_split, sample_kinds
from taskvec.data.sources import SOURCES, Source, listed, register, source
from taskvec.errors import TaskvecError


def test_shipped_sources_and_their_capabilities() -> None:
    assert list(SOURCES) == ["builtin", "file", "finqa", "hf"]
    assert [name for name, s in SOURCES.items() if s.local_files] == ["file", "finqa"]
    assert [name for name, s in SOURCES.items() if s.online] == ["hf"]
    assert [name for name, s in SOURCES.items() if s.task_sets] == ["builtin"]
    assert [name for name, s in SOURCES.items() if s.kinds is not None] == ["builtin"]


def test_a_registered_source_is_accepted_and_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Path | None]] = []

    def load(cfg: DatasetConfig, split: str, base_dir: Path | None) -> list[Sample]:
        calls.append((split, base_dir))
        return [Sample(f"{split}_0", f"q{cfg.seed}", 1.0, "1")]

    monkeypatch.setitem(SOURCES, "toy", Source("toy", lambda cfg: ["dev"], load))
    cfg = DatasetConfig.model_validate({"source": "toy", "seed": 7})
    assert available_splits(cfg) == ["dev"]
    assert load_split(cfg, "dev", Path("/base")) == [Sample("dev_0", "q7", 1.0, "1")]
    assert calls == [("dev", Path("/base"))]
    assert sample_kinds(cfg, "dev") == {}


def test_an_unregistered_source_is_refused_naming_the_registered_ones() -> None:
    with pytest.raises(ValidationError, match="Input should be 'builtin', 'file', 'finqa' or 'hf'"):
        DatasetConfig.model_validate({"source": "toy"})
    with pytest.raises(TaskvecError, match="dataset.source 'toy' is unknown"):
        source("toy")


def test_a_name_cannot_be_registered_twice() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register(SOURCES["file"])


def test_the_builtin_name_error_lists_the_other_sources() -> None:
    with pytest.raises(TaskvecError, match=r"set `dataset.source` to file, finqa or hf$"):
        load_split(DatasetConfig(name="no_such_task"), "train")


def test_listed() -> None:
    assert listed(["a"]) == "a"
    assert listed(["a", "b", "c"]) == "a, b or c"
