"""Mistakes past the YAML are caught before torch or transformers is imported, in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from taskvec.cli import main
from tests.conftest import REPO, write_configs


def _run(*argv: str) -> tuple[int, str, bool]:
    """`taskvec ARGV` in a fresh interpreter: exit status, stderr, whether torch or
    transformers was imported."""
    code = (
        "import sys\nfrom taskvec.cli import main\nrc = main(sys.argv[1:])\n"
        "print('transformers' in sys.modules or 'torch' in sys.modules)\nraise SystemExit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    return result.returncode, result.stderr.strip(), result.stdout.strip() == "True"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"split": "trian"},
            "split: 'trian' is not a split of the dataset; use one of: train, test",
        ),
        ({"layers": [0, 4]}, "layers: layer 4 is out of range for a model with 4 blocks"),
    ],
)
def test_extract_and_validate_fail_before_torch(
    tiny_model_dir: Path, tmp_path: Path, override: dict[str, object], message: str
) -> None:
    config = write_configs(tmp_path, str(tiny_model_dir), **override)
    for command in ("extract", "validate"):
        rc, err, heavy = _run(command, "--config", str(config))
        assert (rc, heavy) == (2, False) and message in err and "\n" not in err


def test_evaluate_flags_and_split_fail_before_torch(tiny_model_dir: Path, tmp_path: Path) -> None:
    write_configs(tmp_path, str(tiny_model_dir))
    prompt = str(tmp_path / "prompt.yaml")
    rc, err, heavy = _run("evaluate", "--config", prompt, "--max-samples", "0")
    assert (rc, heavy) == (2, False)
    assert err == (
        "taskvec evaluate: error: argument --max-samples: must be 1 or more, got 0 "
        "(see `taskvec evaluate --help`)"
    )
    rc, err, heavy = _run("evaluate", "--config", prompt, "--split", "tset")
    assert (rc, heavy) == (2, False) and "split: 'tset' is not a split" in err


def test_resuming_a_complete_run_fails_before_torch(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = write_configs(tmp_path, str(tiny_model_dir), max_samples=2)
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    (name,) = [p.name for p in (tmp_path / "out" / "task_vector").iterdir()]
    rc, err, heavy = _run("extract", "--config", str(config), "--resume", name[:10])
    assert (rc, heavy) == (2, False)
    assert (
        err == f"taskvec: error: --resume: session '{name}' is already complete; nothing to resume"
    )
    results = tmp_path / "results"
    results.mkdir()
    (results / "metrics.json").write_text(json.dumps({"status": "complete"}))
    rc, err, heavy = _run("evaluate", "--resume", str(results))
    assert (rc, heavy) == (2, False) and "is already complete; nothing to resume" in err


def test_the_embedded_depth_known_without_torch_is_the_files() -> None:
    gguf = pytest.importorskip("gguf")
    from taskvec.model.identity import EMBEDDED_BLOCKS, block_count, model_identity

    reader = gguf.GGUFReader(model_identity("smollm2-135m"))
    field = reader.fields["llama.block_count"]
    assert int(field.parts[field.data[0]][0]) == EMBEDDED_BLOCKS == block_count("smollm2-135m")
    assert block_count(model_identity("smollm2-135m")) == EMBEDDED_BLOCKS  # its path, too


@pytest.mark.parametrize("script", ["run.py", "task_vector_generation.py"])
def test_scripts_under_a_python_without_the_packages_say_so(script: str) -> None:
    """`python run.py` outside the venv: one line naming the fix, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(REPO / script), "--config", "x.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"taskvec: error: this Python ({sys.executable}) has no module")
    assert "source .venv/bin/activate" in result.stderr and result.stderr.count("\n") == 1
