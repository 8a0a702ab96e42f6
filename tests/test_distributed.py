"""torchrun data parallelism on the CPU (gloo): two ranks equal one process; a killed rank leaves
a resumable session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from taskvec.cli import main
from taskvec.extraction.distributed import World
from tests.conftest import REPO, write_configs
from tests.test_resume import _assert_same_result, _meta, _raw_dir, _sessions

N = 20


def _config(tmp: Path, model: Path) -> Path:
    return write_configs(tmp, str(model), max_samples=N, batch_size=2, max_batch_tokens=4000)


def _torchrun(*args: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        *args,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = _config(tmp_path_factory.mktemp("one-process"), tiny_model_dir)
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    return _sessions(config)[0]


def test_shards_cover_every_batch_once() -> None:
    batches = [[0, 1], [2], [3, 4, 5], [6], [7, 8]]
    mine = [set(range(9)) - World(rank, 2).shard(batches) for rank in range(2)]
    assert mine == [{0, 1, 3, 4, 5, 7, 8}, {2, 6}] and not mine[0] & mine[1]


def test_two_ranks_equal_one_process(reference: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, tiny_model_dir)
    done = _torchrun("-m", "taskvec", "extract", "--config", str(config), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    (session,) = _sessions(config)
    meta = _meta(session)
    assert (
        meta["status"] == "complete" and meta["engine"]["world_size"] == 2 and meta["n_saved"] == N
    )
    _assert_same_result(reference, session)  # vectors, statistics and file set, bit for bit


def test_a_killed_rank_leaves_a_resumable_session(
    reference: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, tiny_model_dir)
    script = tmp_path / "dies.py"
    script.write_text(
        "import os, signal, time, taskvec.session.writer as s\n"
        "add, calls = s.SessionWriter.add, []\n"
        "def slow_add(self, *a):\n"
        "    calls.append(1)\n"
        "    if os.environ['RANK'] == '1' and len(calls) == 3:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    time.sleep(0.2)\n"
        "    add(self, *a)\n"
        "s.SessionWriter.add = slow_add\n"
        "from taskvec.cli import main\n"
        f"raise SystemExit(main(['extract', '--config', {str(config)!r}, '--quiet']))\n"
    )
    killed = _torchrun(str(script))
    assert killed.returncode != 0
    (session,) = _sessions(config)
    meta = _meta(session)
    saved = len(list(_raw_dir(session).glob("sample_*.pt")))
    assert meta["status"] in ("interrupted", "running") and 0 < saved < N, (
        meta["status"],
        saved,
        killed.stderr[-2000:],
    )
    # now with one process
    assert main(["extract", "--config", str(config), "--quiet", "--resume", session.name]) == 0
    runs = _meta(session)["runs"]
    assert [r["world_size"] for r in runs] == [2, 1] and runs[1]["n_kept"] == saved
    _assert_same_result(reference, session)
    assert json.loads((session / "metadata.json").read_text())["status"] == "complete"


def test_device_map_auto_loads_and_gives_the_same_vectors(
    reference: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`device_map: auto` (accelerate) places the model itself; on a CPU-only machine that is the CPU."""
    config = write_configs(
        tmp_path,
        str(tiny_model_dir),
        max_samples=N,
        batch_size=2,
        max_batch_tokens=4000,
        device_map="auto",
    )
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    _assert_same_result(reference, _sessions(config)[0])
