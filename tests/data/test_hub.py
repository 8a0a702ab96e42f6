"""Hub loading: only the error paths and a stand-in `datasets` can run here (no network, no package)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

import pytest

from taskvec.data import DatasetConfig, FieldMap, Sample, available_splits, load_split
from taskvec.errors import TaskvecError

CFG = DatasetConfig(source="hf", name="someone/fin-qa")


def fake_datasets(monkeypatch: pytest.MonkeyPatch, load: Any) -> None:
    """Install a stand-in `datasets` module whose load_dataset is `load`."""
    module = ModuleType("datasets")
    module.load_dataset = load  # type: ignore[attr-defined]
    module.get_dataset_split_names = lambda name: ["train", "test"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", module)


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(TaskvecError, match=r"pip install 'taskvec\[hf\]'"):
        load_split(CFG, "train")
    with pytest.raises(TaskvecError, match=r"pip install 'taskvec\[hf\]'"):
        available_splits(CFG)


def test_unreachable_dataset_suggests_a_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(name: str, split: str) -> None:
        raise ConnectionError(
            f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)\nmore detail"
        )

    fake_datasets(monkeypatch, offline)
    with pytest.raises(TaskvecError) as exc:
        load_split(CFG, "train")
    message = str(exc.value)
    assert "'someone/fin-qa'" in message and "source: file" in message and "\n" not in message


def test_unknown_hub_split(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_split(name: str, split: str) -> None:
        raise ValueError(f"Unknown split \"{split}\". Should be one of ['train', 'test'].")

    fake_datasets(monkeypatch, no_split)
    with pytest.raises(TaskvecError, match="has no split 'dev'"):
        load_split(CFG, "dev")


def test_rows_map_through_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_datasets(monkeypatch, lambda name, split: [{"problem": "Q?", "solution": "$2,000"}])
    cfg = DatasetConfig(
        source="hf", name="someone/fin-qa", fields=FieldMap(question="problem", answer="solution")
    )
    assert load_split(cfg, "test") == [Sample("test_0", "Q?", 2000.0, "2000")]
    assert available_splits(cfg) == ["train", "test"]


def test_name_is_required() -> None:
    with pytest.raises(TaskvecError, match=r"dataset\.name"):
        load_split(DatasetConfig(source="hf"), "train")


@pytest.mark.skipif(
    importlib.util.find_spec("datasets") is None, reason="needs the real `datasets` package"
)
def test_real_package_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TaskvecError, match="taskvec-no-such/dataset.*source: file"):
        load_split(DatasetConfig(source="hf", name="taskvec-no-such/dataset"), "train")
