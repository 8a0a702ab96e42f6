"""`taskvec steer` end to end on the tiny model: outputs, scale 0, resume, refusals."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import yaml

from taskvec.cli import main
from taskvec.evaluation.predictions import PredictionLog
from taskvec.steering.schema import SteeringResult
from tests.tiny_sessions import edit_metadata, extract_sessions

N = 6


@pytest.fixture(scope="module")
def sessions(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    return extract_sessions(tmp_path_factory.mktemp("steer"), tiny_model_dir, max_samples=4)


def write_steer(tmp: Path, sessions: tuple[Path, list[str]], **changes: object) -> Path:
    out, (cot, van) = sessions
    cfg: dict[str, object] = {
        "prompt_config": str(out.parent / "vanilla_0shot_answer" / "prompt.yaml"),
        "split": "train",
        "max_samples": N,
        "vector": f"{cot} - {van}",
        "session_dir": str(out),
        "layers": [0, -2],
        "scales": [0.0, 8.0],
        "control": "random",
        "batch_size": 5,
        "output_dir": str(tmp / "results"),
        "tag": "t",
    }
    cfg.update(changes)
    path = tmp / "steer.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if v is not None}))
    return path


def predictions(directory: Path) -> dict[str, dict[int, dict]]:
    return {
        d.name: PredictionLog(d / "predictions.jsonl").read()
        for d in sorted((directory / "conditions").iterdir())
    }


@pytest.fixture(scope="module")
def finished(
    sessions: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("run")
    return tmp, str(write_steer(tmp, sessions))


def test_a_sweep_writes_every_condition_scored_two_ways(
    finished: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, config = finished
    assert main(["steer", "--config", config, "--quiet"]) == 0
    out = capsys.readouterr().out
    (directory,) = (tmp / "results").iterdir()
    assert directory.name.startswith("t_tiny-qwen2_") and f"results: {directory}" in out
    result = SteeringResult.load(directory)
    assert result.status == "complete" and result.baseline.n == N
    names = {c.name for c in result.conditions}
    assert names == {
        f"layer{k}_add_x{s}{r}" for k in (0, 2) for s in (0, 8) for r in ("", "_random")
    }
    assert all(name in out for name in names)
    rows = predictions(directory)
    assert set(rows) == names | {"baseline"} and all(len(r) == N for r in rows.values())
    line = rows["layer2_add_x8"][0]
    assert {"sample_id", "generation", "correct", "correct_prefix", "n_generated_tokens"} <= set(
        line
    )
    for c in result.conditions:
        assert c.n == N and c.layer in (0, 2) and c.mode == "add" and c.where == "last"
        if c.scale == 0:  # add x0 is the baseline, bit for bit
            assert c.changed_vs_baseline == 0.0
            assert [r["generation"] for r in rows[c.name].values()] == [
                r["generation"] for r in rows["baseline"].values()
            ]
    assert max(c.changed_vs_baseline for c in result.conditions) > 0
    assert result.vector.norm_per_layer.keys() >= {0, 2} and result.vector.sessions
    assert (directory / "steering.png").stat().st_size > 0
    assert (directory / "vector.safetensors").is_file()


def test_resume_after_sigterm_equals_the_uninterrupted_run(
    finished: tuple[Path, str],
    sessions: tuple[Path, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    done_dir = next((finished[0] / "results").iterdir())
    config = write_steer(tmp_path, sessions)
    original, count = PredictionLog.append, [0]

    def append(self: PredictionLog, row: dict) -> None:
        original(self, row)
        count[0] += 1
        if count[0] == 20:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(PredictionLog, "append", append)
    assert main(["steer", "--config", str(config), "--quiet"]) == 130
    err = capsys.readouterr().err
    (directory,) = (tmp_path / "results").iterdir()
    assert f"taskvec steer --resume {directory}" in err
    assert SteeringResult.load(directory).status == "interrupted"
    assert sum(map(len, predictions(directory).values())) == 20
    monkeypatch.setattr(PredictionLog, "append", original)
    assert main(["steer", "--resume", str(directory), "--quiet"]) == 0
    assert predictions(directory) == predictions(done_dir)
    assert SteeringResult.load(directory).runs[0]["started_at"]
    assert len(SteeringResult.load(directory).runs) == 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"layers": [1]}, "has no layer 1"),
        ({"mode": "replace"}, "`scales` has no meaning for mode replace"),
        ({"vector": "  "}, "the expression is empty"),
        ({"vector": "NOPE - X"}, "NOPE"),
        ({"foo": 1}, "unknown key 'foo'"),
        ({"layers": [9]}, "outside the model's 4 blocks"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    sessions: tuple[Path, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict,
    message: str,
) -> None:
    assert main(["steer", "--config", str(write_steer(tmp_path, sessions, **change))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not (tmp_path / "results").exists()


def test_a_vector_of_another_model_is_refused(
    sessions: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    out, names = sessions
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    for name in names:
        edit_metadata(copy / "task_vector" / name, model="other/model", model_id="other/model")
    prompt = str(out.parent / "vanilla_0shot_answer" / "prompt.yaml")
    config = write_steer(tmp_path, (copy, names), prompt_config=prompt)
    assert main(["steer", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "comes from model 'other/model'" in err, err
    assert not (tmp_path / "results").exists()
    saved = json.loads((copy / "task_vector" / names[0] / "metadata.json").read_text())
    assert saved["model"] == "other/model"
