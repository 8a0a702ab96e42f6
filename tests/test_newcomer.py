"""A newcomer's first hour (issue 13): set-up decisions, messages, quiet runs, honest progress."""

from __future__ import annotations

import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from taskvec.cli import main
from tests.conftest import REPO, write_configs

SCRIPT = REPO / "scripts" / "install-torch.sh"


def _install_torch(env: dict[str, str]) -> str:
    """Run the set-up's torch step with `pip` replaced by `echo`: what it would install, and why."""
    clean = {k: v for k, v in os.environ.items() if k != "TORCH_SPEC"}
    fake_bin = Path(env.pop("FAKE_BIN", "/nonexistent"))
    clean["PATH"] = f"{fake_bin}:{clean['PATH']}"
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env={**clean, "PIP": "echo PIP", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def loopback_index(tmp_path: Path) -> Iterator[str]:
    """A package index on loopback with a torch/ page (stands in for PyTorch's CPU index)."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "index.html").write_text("<a>torch-2.13.0+cpu</a>")
    server = http.server.HTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a stalled index)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def test_setup_takes_the_cpu_index_when_it_answers(loopback_index: str) -> None:
    out = _install_torch({"TORCH_CPU_INDEX": loopback_index})
    assert f"PIP install -q --index-url {loopback_index} torch==2.13.0" in out
    assert "CPU build" in out


def test_setup_falls_back_in_seconds_when_the_cpu_index_stalls(silent_port: int) -> None:
    # subprocess timeout 30 s bounds it
    out = _install_torch({"TORCH_CPU_INDEX": f"http://127.0.0.1:{silent_port}"})
    assert "did not answer" in out and out.strip().endswith("PIP install -q torch==2.13.0")


def test_setup_takes_the_cuda_build_on_a_gpu_machine(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200'\n")
    smi.chmod(0o755)
    out = _install_torch({"FAKE_BIN": str(tmp_path), "TORCH_CPU_INDEX": "http://127.0.0.1:9"})
    assert "NVIDIA GPU found" in out and out.strip().endswith("PIP install -q torch==2.13.0")


def test_setup_override_wins() -> None:
    out = _install_torch({"TORCH_SPEC": "torch==2.5.1"})
    assert out.strip().endswith("PIP install -q torch==2.5.1")


def test_license_is_an_spdx_string() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from taskvec import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"taskvec {__version__}"


def test_misspelt_key_is_named_with_the_closest_allowed_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_configs(tmp_path, "unused", layers=None, layrs=[1, 2])
    assert main(["extract", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'layrs'; did you mean 'layers'?" in err and "required" not in err


def test_misspelt_nested_key_suggests_within_its_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_configs(tmp_path, "unused")
    prompt = yaml.safe_load((tmp_path / "prompt.yaml").read_text())
    prompt["dataset"]["n_trian"] = 5
    (tmp_path / "prompt.yaml").write_text(yaml.safe_dump(prompt))
    assert main(["validate", "--config", str(tmp_path / "extract.yaml")]) == 2
    assert "unknown key 'dataset.n_trian'; did you mean 'n_train'?" in capsys.readouterr().err


def test_invalid_yaml_gives_line_column_and_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: x\nlayers: [1, 2\nsplit: train\n")
    assert main(["extract", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"config '{path}': not valid YAML at line 3, column" in err and "expected ','" in err


def test_config_errors_come_before_torch_is_imported(tmp_path: Path) -> None:
    config = write_configs(tmp_path, "unused", layers=None, layrs=[1])
    code = (
        "import sys; from taskvec.cli import main; rc = main(['extract', '--config', sys.argv[1]]); "
        "print('torch imported' if 'torch' in sys.modules else 'torch not imported'); sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "torch not imported" in result.stdout, (
        result.stdout + result.stderr
    )


def test_patch_config_errors_come_before_torch_is_imported(tmp_path: Path) -> None:
    path = tmp_path / "patch.yaml"
    path.write_text("zero_shot_prompt_config: z.yaml\nfewshot_prompt_config: f.yaml\nlayrs: [1]\n")
    code = (
        "import sys; from taskvec.cli import main; rc = main(['patch', '--config', sys.argv[1]]); "
        "print('torch imported' if 'torch' in sys.modules else 'torch not imported'); sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "torch not imported" in result.stdout, (
        result.stdout + result.stderr
    )
    assert "unknown key 'layrs'; did you mean 'layers'?" in result.stderr


def test_offline_hub_is_detected_up_front(
    monkeypatch: pytest.MonkeyPatch, silent_port: int
) -> None:
    from huggingface_hub import constants

    from taskvec.model.loading import hub_unreachable, resolve_model

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # nothing listens: refused at once
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    hub_unreachable.cache_clear()
    try:
        ref = resolve_model("Qwen/Qwen2.5-1.5B-Instruct")
        assert ref.offline and ref.kwargs() == {"local_files_only": True}
        hub_unreachable.cache_clear()
        # listening: reachable
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{silent_port}")
        assert not resolve_model("Qwen/Qwen2.5-1.5B-Instruct").offline
    finally:
        hub_unreachable.cache_clear()


def test_quiet_silences_the_libraries_bars(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import transformers.utils.logging as tlog

    tlog.enable_progress_bar()
    try:
        config = write_configs(tmp_path, str(tiny_model_dir))
        assert main(["extract", "--config", str(config), "--quiet"]) == 0
        assert not tlog.is_progress_bar_enabled()
        assert capsys.readouterr().err == ""
    finally:
        tlog.enable_progress_bar()
        tlog.set_verbosity_warning()


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_progress_counts_the_tokens_the_engine_computes(prefix_cache: bool) -> None:
    from taskvec.model.engine import Extractor
    from taskvec.prompts.item import Item
    from tests.tiny import make_model

    model = make_model("qwen2", 3)
    shared = list(range(10, 40))
    items = [
        Item(i, shared + list(range(50, 50 + 3 + 2 * i)), [len(shared) + 2 + 2 * i])
        for i in range(7)
    ]
    engine = Extractor(
        model, [0, 2], max_batch_tokens=40, batch_size=3, prefix_cache=prefix_cache, packed=True
    )
    tree = engine.plan(items)
    expected = engine.work(items, tree)
    assert expected == (
        tree.tokens_computed([len(it.ids) for it in items])
        if prefix_cache
        else sum(len(it.ids) for it in items)
    )
    list(engine.run(items, tree))
    assert engine.tokens_done == expected
    done = {0, 1, 2}
    engine.tokens_done = 0
    partial = engine.work(items, tree, done)
    list(engine.run(items, tree, done))
    assert engine.tokens_done == partial < expected


def _file_dataset(tmp_path: Path, rows: list[dict], **dataset: object) -> None:
    """Point the prompt config written by `write_configs` at a JSONL file of `rows`."""
    data = tmp_path / "data" / "rows.jsonl"
    data.parent.mkdir(exist_ok=True)
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompt = yaml.safe_load((tmp_path / "prompt.yaml").read_text())
    prompt["dataset"] = {"source": "file", "splits": {"train": "data/rows.jsonl"}, **dataset}
    prompt["demonstrations"] = {"split": "train"}
    (tmp_path / "prompt.yaml").write_text(yaml.safe_dump(prompt))


ROWS = [
    {
        "id": f"q{i}",
        "question": f"What is {i} plus {i}?",
        "answer": 2 * i,
        "why": f"{i} + {i} = {2 * i}.",
    }
    for i in range(10)
]


def test_a_column_named_id_is_used_by_default(tmp_path: Path, tiny_model_dir: Path) -> None:
    from taskvec.extraction.prepare import prepare

    config = write_configs(
        tmp_path, str(tiny_model_dir), prompt="vanilla_5shot_answer.yaml", max_samples=4
    )
    _file_dataset(tmp_path, ROWS)
    assert [s.id for s in prepare(config).samples] == ["q0", "q1", "q2", "q3"]


def test_session_config_reruns_from_anywhere_and_resume_checks_the_data(
    tmp_path: Path,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_configs(
        tmp_path, str(tiny_model_dir), prompt="vanilla_5shot_answer.yaml", max_samples=4
    )
    _file_dataset(tmp_path, ROWS)
    monkeypatch.chdir(tmp_path)  # the data path is relative to the prompt config's folder
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    session = next((tmp_path / "out" / "task_vector").iterdir())
    saved = yaml.safe_load((session / "config.yaml").read_text())
    assert saved["prompt_config"]["dataset"]["splits"]["train"] == str(
        (tmp_path / "data" / "rows.jsonl").resolve()
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["validate", "--config", str(session / "config.yaml")]) == 0
    meta = json.loads((session / "metadata.json").read_text())
    assert list(meta["data_sha256"]) == [str((tmp_path / "data" / "rows.jsonl").resolve())]
    meta["status"] = "interrupted"
    (session / "metadata.json").write_text(json.dumps(meta))
    # same rows, new bytes
    (tmp_path / "data" / "rows.jsonl").write_text(
        (tmp_path / "data" / "rows.jsonl").read_text() + "\n"
    )
    capsys.readouterr()
    assert (
        main(
            [
                "extract",
                "--config",
                str(session / "config.yaml"),
                "--resume",
                str(session),
                "--quiet",
            ]
        )
        == 2
    )
    assert "rows.jsonl' changed since the session was written" in capsys.readouterr().err


def test_max_samples_beyond_the_split_is_warned_and_recorded(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_configs(
        tmp_path, str(tiny_model_dir), prompt="vanilla_0shot_answer.yaml", max_samples=100000
    )
    _file_dataset(tmp_path, ROWS)
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    assert (
        "warning: max_samples: 100000 asked for, but split 'train' has 10 samples"
        in capsys.readouterr().err
    )
    meta = json.loads(next((tmp_path / "out" / "task_vector").glob("*/metadata.json")).read_text())
    assert (meta["max_samples"], meta["n_split_samples_used"], meta["n_samples"]) == (
        100000,
        10,
        10,
    )


def test_cot_without_rationales_is_refused(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_configs(
        tmp_path, str(tiny_model_dir), prompt="cot_5shot_answer.yaml", max_samples=4
    )
    _file_dataset(tmp_path, ROWS)
    assert main(["validate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "prompt_type: cot needs a rationale" in err and "dataset.fields.rationale" in err
    _file_dataset(tmp_path, ROWS, fields={"rationale": "why"})
    assert main(["validate", "--config", str(config)]) == 0


def test_show_of_an_unfinished_session_says_how_to_resume(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_configs(
        tmp_path, str(tiny_model_dir), prompt="vanilla_0shot_answer.yaml", max_samples=3
    )
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    session = next((tmp_path / "out" / "task_vector").iterdir())
    meta = json.loads((session / "metadata.json").read_text())
    (session / "metadata.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    capsys.readouterr()
    assert main(["show", str(session)]) == 0
    out = capsys.readouterr().out
    assert "not written: the session is interrupted" in out
    assert f"taskvec extract --config {session / 'config.yaml'} --resume {session}" in out


def test_correlate_refuses_predictions_of_another_prompt_config(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.tiny_sessions import extract_sessions

    out, (cot, vanilla) = extract_sessions(tmp_path, tiny_model_dir, max_samples=6)
    results = tmp_path / "results"
    results.mkdir()
    rows = [
        json.loads(line)
        for line in (out / "task_vector" / vanilla / "prompts.jsonl").read_text().splitlines()
    ]
    (results / "predictions.jsonl").write_text(
        "".join(
            json.dumps({"sample_id": r["sample_id"], "prompt": r["prompt"], "correct": i % 2 == 0})
            + "\n"
            for i, r in enumerate(rows)
        )
    )
    (results / "metrics.json").write_text(
        json.dumps(
            {"model": str(tiny_model_dir), "split": "train", "prompt_type": "vanilla", "n_shot": 0}
        )
    )
    args = [
        "correlate",
        cot,
        str(results),
        "--output-dir",
        str(out),
        "--out",
        str(tmp_path / "plots"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert (
        "come from different runs" in err
        and "prompt_type: session 'cot', predictions 'vanilla'" in err
    )
    assert "prompt text differs for 6 of 6" in err
    assert main([*args, "--force"]) == 0
    assert (
        main(
            [
                "correlate",
                vanilla,
                str(results),
                "--output-dir",
                str(out),
                "--out",
                str(tmp_path / "plots2"),
            ]
        )
        == 0
    )


def test_analyses_write_to_a_folder_named_after_their_inputs(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same-tag sessions get short unique labels; outputs go under OUTPUT_DIR/analysis; every
    file is printed."""
    from taskvec.analysis.plotting import session_labels
    from taskvec.session.reader import load_session

    out = tmp_path / "out"
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        config = write_configs(
            tmp_path / run,
            str(tiny_model_dir),
            prompt="vanilla_0shot_answer.yaml",
            max_samples=4,
            output_dir=str(out),
            tag="same",
        )
        assert main(["extract", "--config", str(config), "--quiet"]) == 0
    names = sorted(p.name for p in (out / "task_vector").iterdir())
    labels = session_labels([load_session(n, out) for n in names])
    assert len(set(labels)) == 2 and all(
        label.startswith("same@") and len(label) < 20 for label in labels
    ), labels
    capsys.readouterr()
    assert main(["compare", *names, "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    folder = out / "analysis" / f"compare_{labels[0]}_vs_{labels[1]}"
    assert (
        f"table: {folder / 'compare.csv'}" in printed
        and f"plot: {folder / 'compare_similarity.png'}" in printed
    )
    assert (folder / "compare.csv").is_file() and not list(Path.cwd().glob("compare*.png"))
    assert main(["ls", "--output-dir", str(out)]) == 0
    listing = capsys.readouterr().out
    assert all(n in listing for n in names)


def test_extract_ends_with_next_steps_that_run(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_configs(
        tmp_path, str(tiny_model_dir), prompt="vanilla_0shot_answer.yaml", max_samples=3
    )
    assert main(["extract", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    steps = out.split("next steps")[1].splitlines()
    show = next(line.strip() for line in steps if line.strip().startswith("taskvec show"))
    assert main(show.split()[1:]) == 0
    snippet = next(line.strip() for line in steps if line.strip().startswith("python -c"))
    code = snippet.removeprefix('python -c "').removesuffix('"')
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "torch.Size([64]) torch.Size([3, 64])" in result.stdout, (
        result.stderr
    )
    second = [line.strip() for line in steps if "taskvec extract" in line]
    assert len(second) == 1 and "extract_cot_5shot.yaml" in second[0]  # not the one just run
    assert (REPO / second[0].split("--config ")[1].split()[0]).is_file()
    cot = write_configs(tmp_path, str(tiny_model_dir), max_samples=3)
    assert main(["extract", "--config", str(cot)]) == 0
    steps = capsys.readouterr().out.split("next steps")[1].splitlines()
    compare = next(line.split("#")[0].split() for line in steps if "taskvec compare" in line)
    out = str(tmp_path / "out")
    assert compare == [
        "taskvec",
        "compare",
        "cot_5shot_train",
        "vanilla_0shot_train",
        "--output-dir",
        out,
    ]
    assert main([*compare[1:], "--out", str(tmp_path / "plots")]) == 0


def test_plot_helpers_keep_legends_off_the_data_and_numbers_plain() -> None:
    from taskvec.analysis.plotting import layer_ticks, legend_outside, new_figure, plain_numbers

    fig = new_figure(8, 4)
    ax = fig.subplots()
    for i in range(6):
        ax.plot(
            [0, 29], [1 - 1e-12 * i, 1 - 1e-12 * (i + 1)], label=f"a long session label number {i}"
        )
    plain_numbers(ax)
    legend_outside(ax)
    layer_ticks(ax, [0, 5, 10, 15, 18, 20, 21, 22, 25, 29])
    fig.canvas.draw()
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= axes.x1, "the legend sits beside the axes, not over the data"
    assert ax.yaxis.get_offset_text().get_text() == "", "no offset notation such as 1e-12+1"
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    boxes = [t.get_window_extent() for t in labels]
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:])), "tick labels never overlap"
    empty = new_figure(4, 3).subplots()
    empty.plot([0, 5, 29], [float("nan")] * 3)  # a probe that could not run
    layer_ticks(empty, [0, 5, 29])
    low, high = empty.get_xlim()
    assert low < 0 < 29 < high < 32, "the layer axis spans the layers even without data"
