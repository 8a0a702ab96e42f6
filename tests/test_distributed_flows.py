"""Evaluation and patching under torchrun on the CPU (gloo): two ranks equal one process; a killed
rank leaves a run that one process resumes to the uninterrupted result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from taskvec.cli import main
from taskvec.evaluation.ranks import shard
from taskvec.extraction.distributed import World
from taskvec.extraction.sharding import Group, deal, plan_shards, prefix_groups
from taskvec.model.prefix import plan_prefix_tree
from taskvec.session.reader import load_session
from tests.conftest import write_configs
from tests.test_distributed import _torchrun

N = 10
TASKS = ["direction", "profit_or_loss", "above_one"]
SUMMARY = ("accuracy", "n_samples", "n_correct", "n_parse_failures", "n_truncated")
SUMMARY += ("accuracy_with_fallback", "n_generated_tokens", "n_total")


def test_plan_keeps_branches_whole_and_balances() -> None:
    demos = list(range(100, 140))  # the prefix every prompt shares (the root)
    seqs = [demos + [1] * 30 + [i] * 5 for i in range(4)]  # one branch of four
    seqs += [demos + [2 + i] * 8 for i in range(6)]  # six prompts of their own
    tree = plan_prefix_tree(seqs, [len(s) - 1 for s in seqs])
    lengths = [len(s) for s in seqs]
    total = tree.tokens_computed(lengths, tree.prefix_len) + 10 * len(seqs)
    groups = prefix_groups(tree, lengths, 10, total / 2)
    assert sorted(g.members for g in groups) == [(0, 1, 2, 3), *((m,) for m in range(4, 10))]
    shares, loads = plan_shards([tree], lengths, 10, 2)
    assert {0, 1, 2, 3} <= set(shares[0]) or {0, 1, 2, 3} <= set(shares[1])
    assert sorted(shares[0] + shares[1]) == list(range(10)) and abs(loads[0] - loads[1]) <= 18
    # a branch costing more than a rank's share is split; the plan is the same every time
    assert len(prefix_groups(tree, lengths, 10, total / 8)) > len(groups)
    assert deal([Group((0,), 5), Group((1,), 3), Group((2,), 3)], 2) == ([[0], [1, 2]], [5, 6])
    # resuming: only what is not done is dealt, each prompt to one rank
    done = {0, 5}
    mine = [set(range(10)) - shard(seqs, done, World(rank, 2), True, 10).skip for rank in (0, 1)]
    assert not mine[0] & mine[1] and mine[0] | mine[1] == set(range(10)) - done


def _prompt(tmp: Path, model: Path) -> tuple[Path, Path]:
    """A 5-shot prompt config (6 new tokens) and an extraction config for the same N prompts."""
    extract = write_configs(
        tmp,
        str(model),
        prompt="vanilla_5shot_answer.yaml",
        split="test",
        max_samples=N,
        output_dir=str(tmp / "sessions"),
    )
    prompt = yaml.safe_load((tmp / "prompt.yaml").read_text())
    prompt.update(generation={"max_new_tokens": 6, "do_sample": False})
    (tmp / "prompt.yaml").write_text(yaml.safe_dump(prompt))
    return tmp / "prompt.yaml", extract


def _args(prompt: Path, out: Path) -> list[str]:
    return ["evaluate", "--config", str(prompt), "--output-dir", str(out), "--quiet"] + [
        "--max-samples",
        str(N),
        "--batch-size",
        "3",
    ]


def _only(out: Path) -> Path:
    (directory,) = out.iterdir()
    return directory


@pytest.fixture(scope="module")
def one_process(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: one process evaluates, then extracts the same prompts."""
    tmp = tmp_path_factory.mktemp("one")
    prompt, extract = _prompt(tmp, tiny_model_dir)
    assert main(_args(prompt, tmp / "out")) == 0
    assert main(["extract", "--config", str(extract), "--quiet"]) == 0
    return tmp


def _same_evaluation(reference: Path, results: Path) -> dict[str, object]:
    """predictions.jsonl identical (greedy tokens included), the metrics' numbers equal."""
    expected = (_only(reference / "out") / "predictions.jsonl").read_text()
    assert (results / "predictions.jsonl").read_text() == expected
    assert not list(results.glob("predictions.rank*"))
    ref = json.loads((_only(reference / "out") / "metrics.json").read_text())
    metrics = json.loads((results / "metrics.json").read_text())
    assert {k: metrics[k] for k in SUMMARY} == {k: ref[k] for k in SUMMARY}
    assert metrics["status"] == "complete"
    return metrics


def test_two_ranks_evaluate_and_extract_in_one_pass(
    one_process: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    prompt, extract = _prompt(tmp_path, tiny_model_dir)
    done = _torchrun("-m", "taskvec", *_args(prompt, tmp_path / "out"), "--extract", str(extract))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("results: ") == 1 and "rank 1: " in done.stdout
    metrics = _same_evaluation(one_process, _only(tmp_path / "out"))
    (run,) = metrics["runs"]  # type: ignore[misc]
    assert metrics["world_size"] == 2 and [r["rank"] for r in run["ranks"]] == [0, 1]
    assert sum(r["n_samples"] for r in run["ranks"]) == N
    assert all(r["n_samples"] > 0 for r in run["ranks"])
    one_pass = load_session(str(metrics["extraction_session"]), tmp_path)
    assert one_pass.metadata["status"] == "complete"
    assert one_pass.metadata["engine"]["world_size"] == 2
    (separate,) = (one_process / "sessions" / "task_vector").iterdir()
    alone = load_session(separate.name, one_process / "sessions")
    assert one_pass.sample_ids == alone.sample_ids and one_pass.keys == alone.keys
    for key in alone.keys:
        torch.testing.assert_close(one_pass.vectors(key), alone.vectors(key), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(one_pass.mean(key), alone.mean(key), atol=1e-5, rtol=1e-4)


def test_a_killed_rank_then_one_process_resumes(
    one_process: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    prompt, _ = _prompt(tmp_path, tiny_model_dir)
    script = tmp_path / "dies.py"
    script.write_text(
        "import os, signal, time, taskvec.evaluation.predictions as p\n"
        "append, calls = p.PredictionLog.append, []\n"
        "def slow_append(self, row):\n"
        "    append(self, row)\n"
        "    calls.append(1)\n"
        "    if os.environ['RANK'] == '1' and len(calls) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    time.sleep(0.3)\n"
        "p.PredictionLog.append = slow_append\n"
        "from taskvec.cli import main\n"
        f"raise SystemExit(main({_args(prompt, tmp_path / 'out')!r}))\n"
    )
    killed = _torchrun(str(script))
    assert killed.returncode != 0
    results = _only(tmp_path / "out")
    saved = json.loads((results / "metrics.json").read_text())
    assert saved["status"] in ("interrupted", "failed") and 2 <= saved["n_samples"] < N, (
        saved["status"],
        killed.stderr[-2000:],
    )
    assert (results / "predictions.rank1.jsonl").read_text().count("\n") == 2
    assert main(["evaluate", "--resume", str(results), "--quiet"]) == 0
    metrics = _same_evaluation(one_process, results)
    runs = metrics["runs"]
    assert [r["world_size"] for r in runs] == [2, 1]  # type: ignore[attr-defined]
    assert runs[1]["n_kept"] == saved["n_samples"]  # type: ignore[index]


def test_device_map_auto_evaluates_the_same(
    one_process: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """`--device-map auto` (accelerate places the blocks; on this CPU-only machine, the CPU)."""
    prompt, _ = _prompt(tmp_path, tiny_model_dir)
    assert main([*_args(prompt, tmp_path / "out"), "--device-map", "auto"]) == 0
    metrics = _same_evaluation(one_process, _only(tmp_path / "out"))
    assert metrics["config"]["device_map"] == "auto"  # type: ignore[index]


def test_two_ranks_patch_like_one_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Tasks dealt to two ranks: patching.json equals one process's up to timings."""
    from tests.test_patching import tiny_configs

    def summary(out: str, *launch: str) -> dict[str, object]:
        (tmp_path / out).mkdir()
        cfg = tiny_configs(tmp_path / out, tiny_model_dir, layers=[0, -1], tasks=TASKS)
        args = ["patch", "--config", str(cfg), "--quiet"]
        if launch:
            done = _torchrun(*launch, *args)
            assert done.returncode == 0 and done.stdout.count("results: ") == 1, done.stderr[-3000:]
        else:
            assert main(args) == 0
        found = json.loads((_only(tmp_path / out / "results") / "patching.json").read_text())
        per_rank = found["timings"]["per_rank"]
        assert found.pop("world_size") == len(per_rank) == (2 if launch else 1)
        assert sorted(t for r in per_rank for t in r["tasks"]) == sorted(TASKS)
        for key in ("timings", "config", "config_path"):
            found.pop(key)
        return found

    one = summary("one")
    two = summary("two", "-m", "taskvec")
    assert two == one and one["tasks"] == TASKS


def test_device_map_needs_one_process_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskvec.errors import TaskvecError
    from taskvec.extraction.distributed import join_world

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(TaskvecError, match="one process per node"):
        join_world(torch.device("cuda"), "auto")


def test_two_ranks_steer_like_one_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    """(condition, prompt) pairs dealt to two ranks: steering.json and every condition's
    predictions equal one process's up to timings; that process loads with `device_map: auto`
    (accelerate; the CPU here), which changes nothing either."""
    from tests.test_steer_run import write_steer
    from tests.tiny_sessions import extract_sessions

    (tmp_path / "sessions").mkdir()
    sessions = extract_sessions(tmp_path / "sessions", tiny_model_dir, max_samples=4)

    def result(out: str, *launch: str) -> tuple[dict[str, object], dict[str, str]]:
        (tmp_path / out).mkdir()
        config = write_steer(tmp_path / out, sessions, device_map=None if launch else "auto")
        args = ["steer", "--config", str(config), "--quiet"]
        if launch:
            done = _torchrun(*launch, *args)
            assert done.returncode == 0 and done.stdout.count("results: ") == 1, done.stderr[-3000:]
        else:
            assert main(args) == 0
        directory = _only(tmp_path / out / "results")
        found = json.loads((directory / "steering.json").read_text())
        (run,) = found.pop("runs")
        assert run["world_size"] == (2 if launch else 1) and found.pop("status") == "complete"
        assert len(run["generated_per_rank"]) == run["world_size"]
        assert all(n > 0 for n in run["generated_per_rank"])
        found["config"].pop("output_dir")
        assert found["config"].pop("device_map") == (None if launch else "auto")
        files = {
            d.name: (d / "predictions.jsonl").read_text()
            for d in (directory / "conditions").iterdir()
        }
        assert not list(directory.glob("conditions/*/predictions.rank*"))
        return found, files

    one = result("one")
    assert result("two", "-m", "taskvec") == one and len(one[1]) > 2
