"""Bad input: one line naming the field and the fix, exit status 2, no traceback, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from taskvec.cli import main
from tests.conftest import write_configs


def _edit(path: Path, **changes: object) -> None:
    data = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data))


CASES = [
    ("unknown key", {"layrs": [1]}, {}, "unknown key 'layrs'"),
    (
        "layer out of range",
        {"layers": [0, 4]},
        {},
        "layer 4 is out of range for a model with 4 blocks",
    ),
    ("negative layer out of range", {"layers": [-5]}, {}, "layer -5 is out of range"),
    ("duplicate layers", {"layers": [1, -3]}, {}, "name the same block twice"),
    ("bad position word", {"token_positions": ["middle"]}, {}, "unknown position 'middle'"),
    (
        "position beyond every prompt",
        {"token_positions": [100000]},
        {},
        "out of range for sample 'train_0'",
    ),
    (
        "missing prompt config",
        {"prompt_config": "nope/missing.yaml"},
        {},
        "prompt_config: file 'nope/missing.yaml' not found",
    ),
    (
        "unknown split",
        {"split": "validation"},
        {},
        "split: 'validation' is not a split of the dataset; use one of: train, test",
    ),
    ("max_samples below one", {"max_samples": 0}, {}, "max_samples"),
    ("wrong type", {"batch_size": "many"}, {}, "batch_size"),
    ("empty layers", {"layers": []}, {}, "layers"),
    ("bad dtype", {"dtype": "float8"}, {}, "dtype"),
    ("missing model path", {"model": "/no/such/model/dir"}, {}, "not found"),
    (
        "missing gguf",
        {"model": "/no/such/model.gguf"},
        {},
        "GGUF file '/no/such/model.gguf' not found",
    ),
    ("unknown prompt key", {}, {"n_shots": 3}, "unknown key 'n_shots'"),
    ("too many shots", {}, {"n_shot": 60}, "n_shot=60"),
    (
        "template with an unknown placeholder",
        {},
        {"question_template": "Q: {query}"},
        "question_template must contain {question}",
    ),
    (
        "unformattable template",
        {},
        {"answer_format": "The answer is {answer:.2f}."},
        "answer_format",
    ),
    (
        "unknown demonstration split",
        {},
        {"demonstrations": {"split": "dev"}},
        "demonstrations.split: 'dev' is not a split",
    ),
    ("device without a GPU", {"device": "cuda:1"}, {}, "device: 'cuda:1'"),
    ("unsupported device", {"device": "mps"}, {}, "field 'device'"),
    ("tag that is a path", {"tag": "a/b"}, {}, "field 'tag'"),
    ("duplicate positions", {"token_positions": ["last", "last"]}, {}, "duplicate positions"),
    ("empty positions", {"token_positions": []}, {}, "token_positions"),
    (
        "unknown dataset",
        {},
        {"dataset": {"source": "builtin", "name": "finqa-v9"}},
        "dataset.name 'finqa-v9' is not a builtin",
    ),
    ("unknown dataset source", {}, {"dataset": {"source": "sql"}}, "dataset.source"),
    (
        "dataset file missing",
        {},
        {"dataset": {"source": "file", "path": "nope.jsonl"}},
        "nope.jsonl",
    ),
    ("on_out_of_range typo", {"on_out_of_range": "ignore"}, {}, "on_out_of_range"),
]


def _data_file(tmp: Path, rows: list[dict]) -> str:
    path = tmp / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


DATA_CASES = [
    ("empty split", [], {}, "has no samples"),
    (
        "field mapping to a missing column",
        [{"q": "What is 2+2?", "a": 4}],
        {"question": "question", "answer": "a"},
        "dataset.fields.question names column 'question'",
    ),
]


@pytest.mark.parametrize("what,rows,fields,expected", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_dataset(
    what: str,
    rows: list[dict],
    fields: dict,
    expected: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_configs(tmp_path, str(tiny_model_dir))
    dataset = {"source": "file", "path": _data_file(tmp_path, rows), "fields": fields}
    _edit(tmp_path / "prompt.yaml", dataset=dataset, n_shot=0)
    assert main(["extract", "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskvec: error: ") and "\n" not in err and expected in err, err
    assert not (tmp_path / "out").exists()


def test_invalid_prompt_config_yaml(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_configs(tmp_path, str(tiny_model_dir))
    (tmp_path / "prompt.yaml").write_text("n_shot: [unclosed\n")
    assert main(["extract", "--config", str(config), "--quiet"]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("what,changes,prompt_changes,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(
    what: str,
    changes: dict,
    prompt_changes: dict,
    expected: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_configs(tmp_path, str(tiny_model_dir))
    _edit(config, **changes)
    _edit(tmp_path / "prompt.yaml", **prompt_changes)
    assert main(["extract", "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskvec: error: ") and "\n" not in err and "Traceback" not in err
    assert expected in err, err
    assert not (tmp_path / "out").exists(), "nothing may be written on bad input"


def test_chat_template_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.tiny import save_tiny

    model = save_tiny(tmp_path / "plain-model", "llama", chat_template=False)
    config = write_configs(tmp_path, str(model))
    assert main(["extract", "--config", str(config), "--quiet"]) == 2
    assert "use_chat_template" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_hub_id_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = write_configs(tmp_path, "Qwen/Qwen2.5-1.5B-Instruct")
    assert main(["extract", "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (
        "'Qwen/Qwen2.5-1.5B-Instruct' is not in the local Hugging Face cache" in err
        and "offline" in err
    )


def test_corrupt_gguf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    config = write_configs(tmp_path, str(bad))
    assert main(["extract", "--config", str(config), "--quiet"]) == 2
    assert "may be corrupt" in capsys.readouterr().err


def test_unwritable_output_dir(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = write_configs(tmp_path, str(tiny_model_dir), output_dir=str(blocker / "out"))
    assert main(["extract", "--config", str(config), "--quiet"]) == 2
    assert "output_dir" in capsys.readouterr().err


def test_model_without_weights_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A load that fails after validation (here: no weights file) still leaves no session behind."""
    from tests.tiny import save_tiny

    model = save_tiny(tmp_path / "no-weights", "qwen2")
    for weights in model.glob("*.safetensors"):
        weights.unlink()
    config = write_configs(tmp_path, str(model))
    assert main(["extract", "--config", str(config), "--quiet"]) == 2
    assert "cannot load" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
