"""Interruption and resume: a stopped run keeps its work, says how to go on, and resumes to the
same result."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import taskvec.session.atomic
import taskvec.session.table
import taskvec.session.writer
from taskvec.cli import main
from taskvec.extraction.check import disk_estimate
from taskvec.extraction.prepare import prepare
from taskvec.model.engine import BatchResult, Extractor
from taskvec.session.atomic import FILE_MODE
from taskvec.session.layout import SessionPaths
from taskvec.session.lock import session_lock
from taskvec.session.reader import list_sessions, load_session
from tests.conftest import REPO, write_configs

N = 24


def _config(tmp: Path, model: Path, **overrides: object) -> Path:
    return write_configs(
        tmp, str(model), max_samples=N, batch_size=2, max_batch_tokens=4000, **overrides
    )


def _sessions(config: Path) -> list[Path]:
    return sorted((config.parent / "out" / "task_vector").iterdir())


def _meta(session: Path) -> dict[str, Any]:
    return json.loads((session / "metadata.json").read_text())


def _raw_dir(session: Path) -> Path:
    return session.parents[1] / "raw_representations" / session.name


def _vectors(session: Path) -> list[dict[str, Any]]:
    return [torch.load(f, weights_only=True) for f in sorted(_raw_dir(session).glob("sample_*.pt"))]


def _assert_same_result(a: Path, b: Path) -> None:
    """Per-sample vectors and task vectors bitwise equal, same file set."""
    files = lambda s: sorted(p.name for p in _raw_dir(s).iterdir())  # noqa: E731
    assert files(a) == files(b)
    for x, y in zip(_vectors(a), _vectors(b), strict=True):
        assert x.keys() == y.keys()
        for key, value in x.items():
            assert (
                torch.equal(value, y[key]) if isinstance(value, torch.Tensor) else value == y[key]
            ), key
    tv_a, tv_b = (torch.load(s / "task_vectors.pt", weights_only=True) for s in (a, b))
    assert tv_a.keys() == tv_b.keys()
    for key in tv_a:
        assert torch.allclose(tv_a[key], tv_b[key], rtol=1e-6, atol=0), key
        assert torch.equal(tv_a[key], tv_b[key]), f"{key} differs in the last bit"


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of the same config."""
    config = _config(tmp_path_factory.mktemp("reference"), tiny_model_dir)
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    return _sessions(config)[0]


def test_same_config_twice_is_bitwise_identical(
    reference: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, tiny_model_dir)
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    _assert_same_result(reference, _sessions(config)[0])


def _stop_after(monkeypatch: pytest.MonkeyPatch, n_batches: int, exc: BaseException) -> None:
    """Make the engine raise `exc` when it is about to yield batch `n_batches`."""
    original = Extractor.run

    def run(self: Extractor, *args: Any, **kwargs: Any) -> Iterator[BatchResult]:
        for i, batch in enumerate(original(self, *args, **kwargs)):
            if i == n_batches:
                raise exc
            yield batch

    monkeypatch.setattr(Extractor, "run", run)


def test_ctrl_c_keeps_work_and_resume_equals_uninterrupted(
    reference: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _config(tmp_path, tiny_model_dir)
    _stop_after(monkeypatch, 3, KeyboardInterrupt())
    assert main(["extract", "--config", str(config), "--quiet"]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    (session,) = _sessions(config)
    saved = len(list(_raw_dir(session).glob("sample_*.pt")))
    resume = f"taskvec extract --config {config} --resume {session.name}"
    assert err == f"taskvec: interrupted; {saved} of {N} samples are saved; resume with: {resume}"
    meta = _meta(session)
    assert (
        meta["status"] == "interrupted" and meta["n_saved"] == saved >= 3 and meta["n_samples"] == N
    )
    assert not (session / "task_vectors.pt").exists(), (
        "an interrupted session must not look complete"
    )
    monkeypatch.undo()
    entry = [
        sys.executable,
        str(REPO / "task_vector_generation.py"),
        "--config",
        str(config),
        "--quiet",
        "--resume",
        session.name,
    ]
    # the seed-compatible entry point takes the same flags
    subprocess.run(entry, check=True, capture_output=True)
    assert main(["extract", "--config", str(config), "--quiet", "--resume", str(session)]) == 2
    assert "already complete" in capsys.readouterr().err
    meta = _meta(session)
    assert meta["status"] == "complete" and [r["status"] for r in meta["runs"]] == [
        "interrupted",
        "complete",
    ]
    assert meta["runs"][1]["n_kept"] == saved and meta["runs"][1]["n_to_compute"] == N - saved
    _assert_same_result(reference, session)


def _slow_extract(config: Path) -> subprocess.Popen[str]:
    """`taskvec extract` in a child process, slowed to 0.3 s a batch so a signal lands mid-run."""
    slow = (
        "import time, taskvec.session.writer as s\n"
        "add = s.SessionWriter.add\n"
        "s.SessionWriter.add = lambda self, *a: (time.sleep(0.3), add(self, *a))[1]\n"
        "from taskvec.cli import main\n"
        f"raise SystemExit(main(['extract', '--config', {str(config)!r}, '--quiet']))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    return subprocess.Popen(
        [sys.executable, "-c", slow],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_run_then_resume(reference: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """A real SIGKILL: no chance to clean up. The resumed session equals an uninterrupted one."""
    config = _config(tmp_path, tiny_model_dir)
    proc = _slow_extract(config)
    deadline = time.monotonic() + 120
    raw_root = config.parent / "out" / "raw_representations"
    while time.monotonic() < deadline and len(list(raw_root.glob("*/sample_*.pt"))) < 6:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    out = config.parent / "out"
    assert [s.status for s in list_sessions(out)] == ["running"]  # its writer holds the lock
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (session,) = _sessions(config)
    saved = sorted(_raw_dir(session).glob("sample_*.pt"))
    assert 6 <= len(saved) < N and _meta(session)["status"] == "running"
    assert [s.status for s in list_sessions(out)] == ["stopped"]  # no live writer
    assert load_session(session).describe()[1][1].startswith("stopped (recorded as running")
    saved[0].write_bytes(saved[0].read_bytes()[:100])  # a torn file is redone, not trusted
    assert (
        main(["extract", "--config", str(config), "--quiet", "--resume", str(_raw_dir(session))])
        == 0
    )
    run = _meta(session)["runs"][-1]
    assert run["n_redone"] == 1 and run["n_kept"] == len(saved) - 1
    _assert_same_result(reference, session)


def test_sigterm_ends_like_ctrl_c(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, tiny_model_dir)
    proc = _slow_extract(config)
    raw_root = config.parent / "out" / "raw_representations"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(raw_root.glob("*/sample_*.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "resume with: taskvec extract" in err, err
    assert _meta(_sessions(config)[0])["status"] == "interrupted"


def test_disk_full_ends_like_an_interruption(
    reference: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _config(tmp_path, tiny_model_dir)
    save, calls = taskvec.session.writer.save_torch, []

    def full_disk(path: Path, obj: Any) -> None:
        calls.append(path)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        save(path, obj)

    monkeypatch.setattr(taskvec.session.writer, "save_torch", full_disk)
    assert main(["extract", "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (
        "no space left on device in " in err
        and f"5 of {N} samples are saved" in err
        and "free space and resume with" in err
    )
    (session,) = _sessions(config)
    assert _meta(session)["status"] == "interrupted"
    assert not list(_raw_dir(session).glob(".*")), "no temporary file is left behind"
    monkeypatch.undo()
    assert main(["extract", "--config", str(config), "--quiet", "--resume", session.name]) == 0
    _assert_same_result(reference, session)


def test_nan_is_reported_with_sample_ids(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _config(tmp_path, tiny_model_dir)
    original = Extractor.run

    def overflowing(self: Extractor, *args: Any, **kwargs: Any) -> Iterator[BatchResult]:
        for i, batch in enumerate(original(self, *args, **kwargs)):
            if i == 2:
                vectors = batch.vectors.clone()  # results are inference tensors
                vectors[-1, 0, 0, 3] = float("inf")
                batch = BatchResult(batch.idxs, vectors)
            yield batch

    monkeypatch.setattr(Extractor, "run", overflowing)
    assert main(["extract", "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    (session,) = _sessions(config)
    meta = _meta(session)
    saved = {
        torch.load(f, weights_only=True)["_sample_id"]
        for f in _raw_dir(session).glob("sample_*.pt")
    }
    named = err.split("sample(s): ")[1].split(" ")[0]
    assert "NaN or Inf for 1 sample(s): train_" in err and "bfloat16" in err, err
    assert meta["status"] == "failed" and "NaN or Inf" in meta["error"]
    assert meta["n_saved"] == len(saved) and named not in saved, "the bad sample is not written"


def _interrupted(
    tmp: Path, model: Path, monkeypatch: pytest.MonkeyPatch, n_batches: int
) -> tuple[Path, Path]:
    """A config and its session, interrupted by Ctrl-C after `n_batches` batches."""
    config = _config(tmp, model)
    _stop_after(monkeypatch, n_batches, KeyboardInterrupt())
    assert main(["extract", "--config", str(config), "--quiet"]) == 130
    monkeypatch.undo()
    (session,) = _sessions(config)
    return config, session


def _resume_err(config: Path, session: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["extract", "--config", str(config), "--quiet", "--resume", session]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("taskvec: error: --resume: "), err
    return err


def test_resume_refuses_a_different_config(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, session = _interrupted(tmp_path, tiny_model_dir, monkeypatch, 2)
    before = sorted(p.name for p in _raw_dir(session).iterdir())
    data = yaml.safe_load(config.read_text())
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump({**data, "layers": [0, 1], "token_positions": ["last"]}))
    err = _resume_err(changed, session.name, capsys)
    assert "differs from session" in err and "layers" in err and "token_positions" in err
    prompt = yaml.safe_load((tmp_path / "prompt.yaml").read_text())
    (tmp_path / "prompt2.yaml").write_text(yaml.safe_dump({**prompt, "n_shot": 3}))
    changed.write_text(yaml.safe_dump({**data, "prompt_config": str(tmp_path / "prompt2.yaml")}))
    assert "prompt_config.n_shot: session 5, now 3" in _resume_err(changed, session.name, capsys)
    typo = session.name.replace("_train_", "_trian_")
    assert "did you mean" in _resume_err(config, typo, capsys)
    assert sorted(p.name for p in _raw_dir(session).iterdir()) == before, (
        "a refused resume touches nothing"
    )
    changed.write_text(
        yaml.safe_dump({**data, "batch_size": 5, "max_batch_tokens": 123, "batching": "padded"})
    )
    assert main(["extract", "--config", str(changed), "--quiet", "--resume", session.name]) == 0, (
        "scheduling may change"
    )


def test_a_session_being_written_cannot_be_resumed(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, session = _interrupted(tmp_path, tiny_model_dir, monkeypatch, 1)
    paths = SessionPaths(session.name, session, _raw_dir(session))
    with session_lock(paths):
        assert main(["extract", "--config", str(config), "--quiet", "--resume", session.name]) == 2
    assert "being written by another process" in capsys.readouterr().err


def test_out_of_range_positions_error_or_skip(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskvec.extraction.prepare import prepare

    lengths = sorted(len(it.ids) for it in prepare(_config(tmp_path, tiny_model_dir)).items)
    cut = lengths[N // 2]
    assert lengths[0] < cut, "the test needs prompts of different lengths"
    config = _config(tmp_path, tiny_model_dir, token_positions=["last", -cut])
    assert main(["extract", "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"position -{cut} is out of range for sample" in err and "on_out_of_range: skip" in err
    assert not (tmp_path / "out").exists()
    config = _config(
        tmp_path, tiny_model_dir, token_positions=["last", -cut], on_out_of_range="skip"
    )
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    (session,) = _sessions(config)
    meta = _meta(session)
    short = [s["sample_id"] for s in meta["skipped"]]
    assert len(short) == sum(n < cut for n in lengths) and all(
        s["n_tokens"] < cut for s in meta["skipped"]
    )
    assert meta["n_samples"] == N - len(short) and not set(short) & set(meta["sample_ids"])
    files = {f"sample_{i:05d}.pt" for i in meta["sample_idxs"]}
    assert {p.name for p in _raw_dir(session).glob("sample_*.pt")} == files


def test_disk_estimate_matches_a_session_whose_files_share_one_mode(
    reference: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    parts = disk_estimate(prepare(_config(tmp_path, tiny_model_dir)))
    files = [p for d in (reference, _raw_dir(reference)) for p in d.iterdir()]
    on_disk = {p.name: p.stat().st_size for p in files}
    assert parts["vectors.safetensors"] == pytest.approx(on_disk["vectors.safetensors"], rel=0.05)
    assert sum(parts.values()) == pytest.approx(sum(on_disk.values()), rel=0.1)
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(FILE_MODE)}


def test_validate_reports_without_loading_weights(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import taskvec.extraction.run

    def no_weights(*args: object) -> None:
        raise AssertionError("validate must not load weights")

    monkeypatch.setattr(taskvec.extraction.run, "load_model", no_weights)
    config = _config(tmp_path, tiny_model_dir)
    assert main(["validate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert (
        "4 blocks, hidden size 64" in out and f"{N} of split 'train'" in out and "config OK" in out
    )
    assert "first prompt (train_0, " in out and "Question:" in out
    assert not (tmp_path / "out").exists()
    bad = _config(tmp_path, tiny_model_dir, layers=[9])
    assert main(["validate", "--config", str(bad)]) == 2
    assert "layer 9 is out of range" in capsys.readouterr().err


def test_large_runs_stream_statistics_from_files(
    reference: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above the in-memory cap the statistics come from the files, to the same bits, and there is
    no consolidated file."""
    monkeypatch.setattr(taskvec.session.table, "CONSOLIDATE_MAX_BYTES", 0)
    config = _config(tmp_path, tiny_model_dir)
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    (session,) = _sessions(config)
    assert (
        _meta(session)["consolidated"] is None
        and not (_raw_dir(session) / "vectors.safetensors").exists()
    )
    for key, value in torch.load(reference / "task_vectors.pt", weights_only=True).items():
        assert torch.equal(
            value, torch.load(session / "task_vectors.pt", weights_only=True)[key]
        ), key


def test_disk_full_hidden_by_the_writer_is_named(
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """torch.save on a full disk raises its own RuntimeError, not ENOSPC; the user still reads
    'no space left'."""
    config = _config(tmp_path, tiny_model_dir)
    save, calls = torch.save, []

    def full(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(f)
        if len(calls) > 3:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
        save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(
        taskvec.session.atomic.shutil,
        "disk_usage",
        lambda p: shutil._ntuple_diskusage(2**30, 2**30, 0),
    )
    assert main(["extract", "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    (session,) = _sessions(config)
    assert (
        f"no space left on device in {_raw_dir(session)}; 3 of {N} samples are saved; free space "
        "and resume with" in err
    )
    assert "inline_container" not in err and _meta(session)["status"] == "interrupted"
