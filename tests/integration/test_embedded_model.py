"""The real embedded SmolLM2-135M-Instruct through the seed entry point, checked against a plain forward."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from taskvec.model.capture import decoder_blocks
from taskvec.model.loading import load_model, load_tokenizer, resolve_model
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_extract_with_embedded_model(tmp_path: Path) -> None:
    config = tmp_path / "extract.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": "smollm2-135m",
                "prompt_config": str(REPO / "configs/smollm2-135m/cot_5shot_answer.yaml"),
                "split": "test",
                "max_samples": 4,
                "layers": [3, -1],
                "token_positions": ["last", -2],
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, str(REPO / "task_vector_generation.py"), "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "session: cot_5shot_test_SmolLM2-135M-Instruct.Q4_1_task_vector_" in proc.stdout
    # the bar counts tokens computed, and samples
    assert "tok/s" in proc.stderr and "4/4 samples" in proc.stderr
    session = next((tmp_path / "out" / "task_vector").iterdir())
    meta = json.loads((session / "metadata.json").read_text())
    assert meta["n_model_layers"] == 30 and meta["hidden_size"] == 576 and meta["layers"] == [3, 29]
    tv = torch.load(session / "task_vectors.pt", weights_only=True)
    assert tv["layer_29_pos_last"].shape == (576,)

    ref = resolve_model("smollm2-135m")
    tok, model = load_tokenizer(ref), load_model(ref, torch.float32, torch.device("cpu"))
    last_block: dict[str, torch.Tensor] = {}
    decoder_blocks(model)[-1].register_forward_hook(
        lambda m, a, out: last_block.__setitem__("h", out[0] if isinstance(out, tuple) else out)
    )
    raw_dir = tmp_path / "out" / "raw_representations" / session.name
    for line in (session / "prompts.jsonl").read_text().splitlines()[:2]:
        row = json.loads(line)
        raw = torch.load(raw_dir / f"sample_{row['sample_idx']:05d}.pt", weights_only=True)
        ids = tok(row["prompt"], add_special_tokens=row["add_special_tokens"])["input_ids"]
        assert len(ids) == raw["_seq_len"]
        with torch.no_grad():
            hs = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        last = raw["_token_indices"][0]
        torch.testing.assert_close(raw["layer_3_pos_last"], hs[4][0, last], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(
            raw["layer_29_pos_last"], last_block["h"][0, last], rtol=1e-4, atol=1e-4
        )


def test_evaluate_extract_and_correlate_on_embedded_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The walkthrough on the real model: evaluate (run.py), extract the same samples, correlate by id."""
    from taskvec.cli import main
    from taskvec.session.reader import load_session

    prompt = REPO / "configs/smollm2-135m/vanilla_5shot_answer.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "run.py"),
            "--config",
            str(prompt),
            "--max-samples",
            "4",
            "--output-dir",
            str(tmp_path / "results"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "de-quantizing" not in proc.stderr and "Loading weights" not in proc.stderr, (
        "--quiet silences the libraries' bars"
    )
    results = next((tmp_path / "results").iterdir())
    rows = [json.loads(line) for line in (results / "predictions.jsonl").read_text().splitlines()]
    assert [r["sample_id"] for r in rows] == [f"test_{i}" for i in range(4)]
    assert all(r["generation"] and r["n_generated_tokens"] > 0 for r in rows)
    metrics = json.loads((results / "metrics.json").read_text())
    assert metrics["n_samples"] == 4 and metrics["n_correct"] == sum(r["correct"] for r in rows)

    config = tmp_path / "extract.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "prompt_config": str(prompt),
                "split": "test",
                "max_samples": 4,
                "layers": [5, 15],
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    session = load_session(next((tmp_path / "out" / "task_vector").iterdir()))
    assert session.sample_ids == [r["sample_id"] for r in rows]
    assert [p["prompt"] for p in session.prompts] == [r["prompt"] for r in rows], (
        "extraction and evaluation see the same prompts"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["correlate", str(session.task_vector_dir), str(results), "--out", "plots"]) == 0
    assert (
        "4 matched" in capsys.readouterr().out
        and (tmp_path / "plots" / "correlate.png").stat().st_size > 10_000
    )


def test_generation_equals_generate_batch_size_one_on_embedded_model() -> None:
    """On the real model (where a position off by one shows), continuous batching with the shared 5-shot
    prefix gives plain `generate`'s greedy tokens at batch size 1."""
    from benchmarks.hf_generate import generate_padded

    from taskvec.evaluation.prepare import prepare_evaluation
    from taskvec.evaluation.stopping import answer_stop_pattern
    from taskvec.model.loading import load_model
    from tests.generating import generate

    prep = prepare_evaluation(
        REPO / "configs/smollm2-135m/vanilla_5shot_answer.yaml", max_samples=4
    )
    model = load_model(prep.model_ref, torch.float32, torch.device("cpu"))
    gen = prep.prompt_config.generation.model_copy(update={"max_new_tokens": 24})
    stop = answer_stop_pattern(prep.prompt_config.answer_format)
    reference = generate_padded(model, prep.tokenizer, prep.ids, gen, 1, stop)
    assert generate(model, prep.tokenizer, prep.ids, gen, 3, stop) == reference
