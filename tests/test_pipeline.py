"""End to end on a tiny local model: files, layout, statistics, reproducibility from prompts.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from taskvec.cli import main
from taskvec.session.directories import create_session
from tests.conftest import write_configs

KEYS = [f"layer_{L}_pos_{p}" for L in (0, 2, 3) for p in ("last", -2, "first")]


def _run(config: Path) -> Path:
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    sessions = sorted((config.parent / "out" / "task_vector").iterdir())
    return sessions[-1]


def _raw(session: Path) -> list[dict]:
    raw_dir = session.parents[1] / "raw_representations" / session.name
    files = sorted(raw_dir.glob("sample_*.pt"))
    return [torch.load(f, weights_only=True) for f in files]


@pytest.fixture(scope="module")
def session(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(write_configs(tmp_path_factory.mktemp("run"), str(tiny_model_dir)))


def test_layout_and_metadata(session: Path) -> None:
    assert session.name.startswith("cot_5shot_train_tiny-qwen2_task_vector_")
    names = {p.name for p in session.iterdir()}
    assert names == {
        "config.yaml",
        "metadata.json",
        "task_vectors.pt",
        "prompts.jsonl",
        "layer_0.pt",
        "layer_2.pt",
        "layer_3.pt",
    }
    meta = json.loads((session / "metadata.json").read_text())
    for field in (
        "session_name",
        "model",
        "n_samples",
        "layers",
        "token_positions",
        "prompt_type",
        "split",
        "hidden_size",
        "sample_ids",
        "n_shot",
        "prompt_config",
        "dtype",
        "device",
        "versions",
        "timings",
    ):
        assert field in meta, field
    assert meta["layers"] == [0, 2, 3] and meta["layer_convention"] == "block_output"
    assert meta["n_samples"] == 12 and meta["sample_ids"] == [f"train_{i}" for i in range(12)]
    assert meta["token_positions"] == ["last", -2, "first"] and meta["hidden_size"] == 64
    assert meta["status"] == "complete" and meta["dtype"] == "float32"
    resolved = yaml.safe_load((session / "config.yaml").read_text())
    assert resolved["prompt_config"]["n_shot"] == 5 and resolved["layers"] == [0, 2, -1]
    assert meta["prompt_config"].endswith("prompt.yaml")


def test_files_load_with_weights_only(session: Path) -> None:
    tv = torch.load(session / "task_vectors.pt", weights_only=True)
    assert set(tv) == set(KEYS) | {f"{k}_std" for k in KEYS}
    assert all(v.shape == (64,) and v.dtype == torch.float32 for v in tv.values())
    layer2 = torch.load(session / "layer_2.pt", weights_only=True)
    assert set(layer2) == {k for k in tv if k.startswith("layer_2_")}
    raws = _raw(session)
    assert [r["_sample_idx"] for r in raws] == list(range(12))
    for r in raws:
        assert set(r) == set(KEYS) | {"_sample_id", "_sample_idx", "_seq_len", "_token_indices"}
        assert r["_token_indices"] == [r["_seq_len"] - 1, r["_seq_len"] - 2, 0]
        assert r["layer_0_pos_last"].shape == (64,) and r["layer_0_pos_last"].dtype == torch.float32


def test_mean_and_std_equal_torch(session: Path) -> None:
    tv = torch.load(session / "task_vectors.pt", weights_only=True)
    raws = _raw(session)
    for key in KEYS:
        stacked = torch.stack([r[key] for r in raws])
        torch.testing.assert_close(tv[key], stacked.mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(tv[f"{key}_std"], stacked.std(0), rtol=1e-5, atol=1e-6)


def test_prompts_jsonl_reproduces_vectors(session: Path, tiny_model_dir: Path) -> None:
    """Re-tokenising each stored prompt gives `_seq_len`, and a plain forward gives the vectors."""
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    lines = [json.loads(x) for x in (session / "prompts.jsonl").read_text().splitlines()]
    raws = _raw(session)
    assert [x["sample_id"] for x in lines] == [r["_sample_id"] for r in raws]
    for line, raw in zip(lines, raws):
        ids = tok(line["prompt"], add_special_tokens=line["add_special_tokens"])["input_ids"]
        assert len(ids) == raw["_seq_len"] == line["n_tokens"]
        with torch.no_grad():
            hs = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        for p, t in zip(("last", -2, "first"), raw["_token_indices"]):
            torch.testing.assert_close(raw[f"layer_2_pos_{p}"], hs[3][0, t], rtol=1e-4, atol=1e-5)
        assert line["sample_id"] not in line["demo_ids"] and len(line["demo_ids"]) == 5


def test_batching_and_prefix_cache_do_not_change_vectors(
    session: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    plain = _run(
        write_configs(
            tmp_path, str(tiny_model_dir), batch_size=1, max_batch_tokens=1, prefix_cache="off"
        )
    )
    for a, b in zip(_raw(session), _raw(plain)):
        for key in KEYS:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    meta = json.loads((session / "metadata.json").read_text())["engine"]
    assert meta["tokens_computed"] < meta["tokens_total"] / 2  # the 5-shot prefix is shared


def test_plain_text_prompts_and_entry_point_agree(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`use_chat_template: false` works on a tokenizer with none; the seed entry point matches the CLI."""
    import subprocess
    import sys

    from tests.conftest import REPO

    cfg = write_configs(
        tmp_path, str(tiny_model_dir), prompt="vanilla_0shot_answer.yaml", max_samples=3
    )
    prompt = yaml.safe_load((tmp_path / "prompt.yaml").read_text())
    prompt["use_chat_template"] = False
    (tmp_path / "prompt.yaml").write_text(yaml.safe_dump(prompt))
    proc = subprocess.run(
        [sys.executable, str(REPO / "task_vector_generation.py"), "--config", str(cfg), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "session: vanilla_0shot_train_tiny-qwen2_task_vector_" in proc.stdout
    session = sorted((tmp_path / "out" / "task_vector").iterdir())[-1]
    first = json.loads((session / "prompts.jsonl").read_text().splitlines()[0])
    assert first["prompt"].startswith("<|endoftext|>") and first["prompt"].endswith("\nAnswer:")
    assert first["add_special_tokens"] is False  # the start token is in the text


def test_session_config_yaml_reruns_to_the_same_vectors(session: Path, tmp_path: Path) -> None:
    """config.yaml (prompt config inlined) is itself a valid extraction config, and reproduces the run."""
    rerun_cfg = yaml.safe_load((session / "config.yaml").read_text())
    rerun_cfg["output_dir"] = str(tmp_path / "out")
    (tmp_path / "extract.yaml").write_text(yaml.safe_dump(rerun_cfg))
    rerun = _run(tmp_path / "extract.yaml")
    assert rerun.name.rsplit("_task_vector_", 1)[0] == session.name.rsplit("_task_vector_", 1)[0]
    for a, b in zip(_raw(session), _raw(rerun), strict=True):
        for key in KEYS:
            assert torch.equal(a[key], b[key])


def test_session_names_never_collide(tmp_path: Path) -> None:
    a = create_session(tmp_path, "x_task_vector_20260101_000000")
    b = create_session(tmp_path, "x_task_vector_20260101_000000")
    assert a.name != b.name and a.task_vector_dir.is_dir() and b.raw_dir.is_dir()
