"""Task-vector patching: the hook changes exactly what it should, the fast path equals a full
forward, runs end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from taskvec.cli import main
from taskvec.data import DatasetConfig, load_split
from taskvec.data.builtin import generate_labeled, generate_split
from taskvec.data.short import LABELS, SHORT_KINDS
from taskvec.model.capture import capture, decoder_blocks
from taskvec.model.intervene import (
    full_logits,
    last_token_logits,
    mean_last_token_vectors,
    patching,
    prefix_cache,
)
from tests.conftest import REPO
from tests.tiny import make_model, make_tokenizer

N_LAYERS = 4


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return make_model("qwen2", N_LAYERS)


@pytest.fixture(scope="module")
def ids() -> list[int]:
    return make_tokenizer()("Revenue went from $4.2M to $3.9M. Direction:\nAnswer:")["input_ids"]


def hidden_states(model: torch.nn.Module, ids: list[int]) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states


def own_vectors(model: torch.nn.Module, ids: list[int]) -> dict[int, torch.Tensor]:
    """Block-L output at the last token of `ids`, for every block (read with taskvec.model.capture)."""
    layers = list(range(N_LAYERS))
    with (
        torch.inference_mode(),
        capture(decoder_blocks(model), layers, torch.tensor([len(ids) - 1]), None) as got,
    ):
        model(input_ids=torch.tensor([ids]))
    return {layer: got[layer][0].clone() for layer in layers}


def hooks(model: torch.nn.Module) -> list[int]:
    """The forward hooks on each block (transformers may keep its own there, so compare counts)."""
    return [len(block._forward_hooks) for block in decoder_blocks(model)]


def test_add_zero_vector_changes_nothing(model: torch.nn.Module, ids: list[int]) -> None:
    zeros = {layer: torch.zeros(64) for layer in range(N_LAYERS)}
    logits = last_token_logits(
        model, ids, prefix_cache(model, ids), zeros, list(range(N_LAYERS)), mode="add", scale=3.0
    )
    assert logits.shape[0] == 1 + N_LAYERS
    for row in range(1, 1 + N_LAYERS):
        torch.testing.assert_close(logits[row], logits[0], rtol=0, atol=1e-5)


def test_replacing_with_own_vector_changes_nothing(model: torch.nn.Module, ids: list[int]) -> None:
    own = own_vectors(model, ids)
    # capture agrees with HF hidden_states[L+1] for all but the last block (independent source of truth)
    hs = hidden_states(model, ids)
    for layer in range(N_LAYERS - 1):
        torch.testing.assert_close(own[layer], hs[layer + 1][0, -1])
    logits = last_token_logits(model, ids, prefix_cache(model, ids), own, list(range(N_LAYERS)))
    for row in range(1, 1 + N_LAYERS):
        torch.testing.assert_close(logits[row], logits[0], rtol=0, atol=1e-5)


def block_outputs(model: torch.nn.Module, ids: list[int]) -> dict[int, torch.Tensor]:
    """Every block's output at every position, read by hooks registered after any patching hook
    (so they see its result)."""
    with (
        torch.inference_mode(),
        capture(decoder_blocks(model), list(range(N_LAYERS)), torch.arange(len(ids)), None) as got,
    ):
        model(input_ids=torch.tensor([ids]))
    return dict(got)


def test_hook_touches_only_the_intended_layer_and_position(
    model: torch.nn.Module, ids: list[int]
) -> None:
    layer, vec, last = 1, torch.full((64,), 7.0), len(ids) - 1
    base, before = block_outputs(model, ids), hooks(model)
    with patching(decoder_blocks(model), {layer: ([0], vec)}, position=last):
        patched = block_outputs(model, ids)
    assert hooks(model) == before
    for i in range(layer):  # blocks before L: untouched
        torch.testing.assert_close(patched[i], base[i], rtol=0, atol=0)
    torch.testing.assert_close(patched[layer][last], vec)  # block L at the last token: the vector
    # every earlier position, at L and every later block: untouched (causal)
    for i in range(layer, N_LAYERS):
        torch.testing.assert_close(patched[i][:last], base[i][:last], rtol=0, atol=1e-5)
    assert not torch.allclose(patched[N_LAYERS - 1][last], base[N_LAYERS - 1][last])


def test_sweep_rows_equal_single_layer_runs_and_full_forward(
    model: torch.nn.Module, ids: list[int]
) -> None:
    torch.manual_seed(1)
    before = hooks(model)
    vectors = {layer: torch.randn(64) for layer in range(N_LAYERS)}
    kv = prefix_cache(model, ids)
    swept = last_token_logits(model, ids, kv, vectors, list(range(N_LAYERS)))
    # unpatched row = zero-shot
    torch.testing.assert_close(swept[0], full_logits(model, ids), rtol=0, atol=1e-4)
    for i, layer in enumerate(range(N_LAYERS)):
        single = last_token_logits(model, ids, kv, vectors, [layer])
        torch.testing.assert_close(swept[1 + i], single[1], rtol=0, atol=1e-5)
        with patching(decoder_blocks(model), {layer: ([0], vectors[layer])}, position=-1):
            full = full_logits(model, ids)
        torch.testing.assert_close(swept[1 + i], full, rtol=0, atol=1e-4)
        assert not torch.allclose(swept[1 + i], swept[0])
    # the cached prefix was not extended by the runs on top of it
    assert kv[0][0].shape[-2] == len(ids) - 1
    assert hooks(model) == before


def test_add_mode_matches_full_forward_with_added_vector(
    model: torch.nn.Module, ids: list[int]
) -> None:
    vec, layer = torch.randn(64, generator=torch.Generator().manual_seed(2)), 2
    fast = last_token_logits(
        model, ids, prefix_cache(model, ids), {layer: vec}, [layer], mode="add", scale=0.5
    )
    own = own_vectors(model, ids)[layer]
    replaced = last_token_logits(
        model, ids, prefix_cache(model, ids), {layer: own + 0.5 * vec}, [layer]
    )
    torch.testing.assert_close(fast[1], replaced[1], rtol=0, atol=1e-4)


def test_hooks_are_removed_even_on_exception(model: torch.nn.Module) -> None:
    before = hooks(model)
    with pytest.raises(RuntimeError, match="boom"):
        with patching(
            decoder_blocks(model), {0: ([0], torch.zeros(64)), 3: ([0], torch.zeros(64))}
        ):
            assert hooks(model) == [before[0] + 1, before[1], before[2], before[3] + 1]
            raise RuntimeError("boom")
    assert hooks(model) == before


def test_mean_vectors_equal_mean_of_hf_hidden_states(model: torch.nn.Module) -> None:
    tok = make_tokenizer()
    prompts = [
        tok(t)["input_ids"]
        for t in (
            "Revenue 120, costs 150. Result:\nAnswer:",
            "Question: ratio?\nAnswer:",
            "A B C D E F G\nAnswer:",
        )
    ]
    means = mean_last_token_vectors(model, prompts, [0, 2], batch_size=2)
    for layer in (0, 2):
        expected = torch.stack([hidden_states(model, p)[layer + 1][0, -1] for p in prompts]).mean(0)
        torch.testing.assert_close(means[layer], expected, rtol=0, atol=1e-5)


# --- builtin short-answer tasks -------------------------------------------------------


@pytest.mark.parametrize("kind", list(SHORT_KINDS))
def test_short_tasks_are_deterministic_single_word_and_balanced(kind: str) -> None:
    samples = generate_split("train", 80, seed=3, name=kind)
    assert samples == generate_split("train", 80, seed=3, name=kind)
    assert {s.answer_text for s in samples} == set(LABELS[kind])
    for s in samples:
        assert s.answer_text.isalpha() and " " not in s.answer_text
        assert s.answer is None  # a text answer
    share = sum(s.answer_text == LABELS[kind][0] for s in samples) / len(samples)
    assert 0.25 < share < 0.75
    assert not {s.question for s in samples} & {
        s.question for s in generate_split("test", 80, seed=3, name=kind)
    }


def test_short_set_mixes_all_kinds_and_finance_default_is_unchanged() -> None:
    assert {k for k, _ in generate_labeled("test", 40, name="short")} == set(SHORT_KINDS)
    assert load_split(DatasetConfig(name="direction", n_test=5), "test") == generate_split(
        "test", 5, name="direction"
    )
    assert load_split(DatasetConfig(n_test=5), "test") == generate_split("test", 5)


# --- configs, CLI and the end-to-end run on the tiny model -----------------------------------


def tiny_configs(tmp: Path, model_dir: Path, **overrides: object) -> Path:
    for shot in (0, 5):
        cfg = yaml.safe_load(
            (REPO / "configs" / "smollm2-135m" / f"short_plain_{shot}shot.yaml").read_text()
        )
        cfg["model"] = str(model_dir)
        (tmp / f"p{shot}.yaml").write_text(yaml.safe_dump(cfg))
    patch_cfg: dict[str, object] = {
        "fewshot_prompt_config": "p5.yaml",
        "zero_shot_prompt_config": "p0.yaml",
        "tasks": ["direction", "above_one"],
        "tv_max_samples": 4,
        "dev_max_samples": 3,
        "test_max_samples": 3,
        "output_dir": str(tmp / "results"),
        "device": "cpu",
    }
    patch_cfg.update(overrides)
    path = tmp / "patch.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in patch_cfg.items() if v is not None}))
    return path


def test_patch_end_to_end_writes_json_and_plot_and_never_overwrites(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny_configs(tmp_path, tiny_model_dir, layers=[0, -1], tag="t")
    assert main(["patch", "--config", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert ("<- best" in out or "no effect" in out) and "mean, all tasks" in out
    assert main(["patch", "--config", str(path), "--quiet"]) == 0
    dirs = sorted((tmp_path / "results").iterdir())
    assert len(dirs) == 2
    summary = json.loads((dirs[0] / "patching.json").read_text())
    assert (dirs[0] / "patching.png").stat().st_size > 0
    assert summary["dev"]["layers"] == [0, N_LAYERS - 1] and summary["best_layer"] in (
        None,
        0,
        N_LAYERS - 1,
    )
    assert summary["tasks"] == ["direction", "above_one"]
    for key in (
        "zero_shot",
        "few_shot",
        "task_vector",
        "task_vector_over_few_shot",
        "task_vector_restricted",
        "task_vector_per_task",
        "task_vector_shared",
    ):
        assert key in summary["test"]
    assert summary["layer_choice"] == "per_task" and "test_learned_in_context" in summary
    for task in summary[
        "per_task"
    ]:  # the headline is the task's own layer; a task without effect counts at zero-shot
        test, own = task["test"], task["dev"]["best_layer"]
        assert test["layer"] == own and test["task_vector"] == test["task_vector_per_task"]
        if own is None:
            assert test["task_vector"] == test["zero_shot"]
    assert summary["config"]["mode"] == "replace"
    assert summary["start_token"]["zero_shot"] == {
        "setting": "auto",
        "token": "<|endoftext|>",
        "added_by": "prompt",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mode": "bogus"}, "mode"),
        ({"typo_key": 1}, "unknown key 'typo_key'"),
        ({"fewshot_prompt_config": None}, "fewshot_prompt_config"),
        ({"scale": 2.0}, "scale"),
        ({"layers": [9]}, "layers: layer 9 is out of range"),
        ({"tasks": ["nope"]}, "nope"),
        (
            {"zero_shot_prompt_config": "missing.yaml"},
            "zero_shot_prompt_config: file 'missing.yaml' not found",
        ),
        ({"zero_shot_prompt_config": "p5.yaml"}, "zero_shot_prompt_config: its n_shot is 5"),
        ({"dev_max_samples": 1000}, "dev_split"),
    ],
)
def test_bad_config_exits_2_with_one_line(
    tmp_path: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    overrides: dict[str, object],
    message: str,
) -> None:
    path = tiny_configs(tmp_path, tiny_model_dir, **overrides)
    assert main(["patch", "--config", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("taskvec: error:") and message in err, err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_task_vectors_from_a_session(tmp_path: Path, tiny_model_dir: Path) -> None:
    from taskvec.extraction.run import extract
    from taskvec.patching.run import patch
    from taskvec.session.reader import load_session
    from tests.conftest import write_configs

    paths = extract(
        write_configs(
            tmp_path,
            str(tiny_model_dir),
            prompt="short_plain_5shot.yaml",
            token_positions=["last"],
            layers=[0, 2, -1],
            max_samples=6,
        ),
        progress=False,
    )
    session = load_session(paths.task_vector_dir)
    cfg = tiny_configs(
        tmp_path,
        tiny_model_dir,
        task_vectors=str(paths.task_vector_dir),
        tasks=None,
        mode="add",
        scale=0.0,
    )
    result = patch(cfg, progress=False)
    s = result.summary
    assert s.dev.layers == [0, 2, N_LAYERS - 1] and session.layers == [0, 2, N_LAYERS - 1]
    # add mode with scale 0 is the zero-shot run at every layer
    assert all(v == s.dev.zero_shot for v in s.dev.task_vector.values())
    assert s.test["task_vector"] == s.test["zero_shot"]


def test_shared_layer_choice_tests_every_task_at_the_mean_best_layer(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from taskvec.patching.run import patch

    summary = patch(
        tiny_configs(tmp_path, tiny_model_dir, layers=[0, 1, 2], layer_choice="shared"),
        progress=False,
    ).summary
    shared = summary.best_layer
    for task in summary.per_task:
        test = task.test
        assert test["layer"] == shared and test["task_vector"] == test["task_vector_shared"]
    assert summary.test["task_vector"] == summary.test["task_vector_shared"]


def _table_is_aligned(printed: str) -> None:
    """Every row of the task table has its numbers under the header's columns."""
    lines = printed.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("task "))
    end = next(i for i, line in enumerate(lines) if line.startswith("layer choice"))
    header, rows = lines[start], lines[start + 1 : end]
    ends = [header.index(name) + len(name) for name in ("zero", "few", "TV shared")]
    assert any("mean, few-shot >= 0.5" in row for row in rows)
    for row in rows:
        assert all(row[end - 1] != " " and row[end : end + 1] in ("", " ") for end in ends), row


def test_an_interrupted_suite_resumes_keeping_finished_tasks(
    tmp_path: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import taskvec.patching.run as flow

    path = tiny_configs(tmp_path, tiny_model_dir, layers=[0, -1], tag="t")
    assert main(["patch", "--config", str(path), "--quiet"]) == 0
    _table_is_aligned(capsys.readouterr().out)
    (whole,) = (tmp_path / "results").iterdir()
    calls: list[str] = []
    run_dev = flow.run_dev

    def second_is_interrupted(*args: Any) -> Any:
        calls.append(args[3].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run_dev(*args)

    monkeypatch.setattr(flow, "run_dev", second_is_interrupted)
    assert main(["patch", "--config", str(path), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "1 of 2 tasks' dev sweeps are kept; resume with: taskvec patch --config" in err
    resumed = Path(err.split("--resume ")[1].strip())
    calls.clear()
    assert main(["patch", "--config", str(path), "--quiet", "--resume", str(resumed)]) == 0
    assert calls == ["above_one"]  # direction was kept
    a, b = (json.loads((d / "patching.json").read_text()) for d in (whole, resumed))
    for summary in (a, b):
        del summary["timings"]
    assert a == b
    assert main(["patch", "--config", str(path), "--quiet", "--resume", str(resumed)]) == 2
    assert "is already complete" in capsys.readouterr().err
