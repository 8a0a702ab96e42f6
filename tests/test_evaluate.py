"""The evaluation run on a tiny random model: files and fields, same samples as extraction,
batching, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from benchmarks.hf_generate import generate_padded

import taskvec.evaluation.loop as loop
import taskvec.evaluation.run as ev
from taskvec.cli import main
from taskvec.data.base import Sample
from taskvec.data.builtin import generate_labeled
from taskvec.errors import Interrupted
from taskvec.evaluation import stopping
from taskvec.evaluation.predictions import PredictionLog, log_path, merge, read_all
from taskvec.evaluation.prepare import EvalPrepared, prepare_evaluation
from taskvec.extraction.prepare import prepare
from taskvec.model.generation import Finished, GenerationStats
from taskvec.model.loading import load_model
from taskvec.session.directories import create_unique_dir
from tests.conftest import REPO, write_configs
from tests.generating import generate
from tests.tiny import script_model

PREDICTION_FIELDS = {
    "sample_idx", "sample_id", "prompt", "generation", "parsed_answer", "parsed_text", "parse_method",
    "gold", "gold_text", "correct", "n_prompt_tokens", "n_generated_tokens", "finish_reason", "truncated",
    "correct_if_not_truncated", "kind",
}  # fmt: skip
METRIC_FIELDS = {
    "session_name", "status", "accuracy", "n_samples", "n_correct", "n_parse_failures", "split", "model",
    "model_short", "prompt_type", "n_shot", "generation", "timings", "versions", "created_at", "config",
    "n_truncated", "accuracy_with_fallback", "runs",
}  # fmt: skip


def write_prompt(
    tmp: Path, model: str, prompt: str = "vanilla_0shot_answer.yaml", **changes: Any
) -> Path:
    """A shipped prompt config with the model replaced, a small dataset and 8 new tokens."""
    cfg = yaml.safe_load((REPO / "configs" / "smollm2-135m" / prompt).read_text())
    cfg.update(model=model, generation={"max_new_tokens": 8, "do_sample": False})
    cfg["dataset"].update(n_train=40, n_test=12)
    cfg.update(changes)
    path = tmp / "prompt.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(config: Path, out: Path, *extra: str) -> int:
    return main(["evaluate", "--config", str(config), "--output-dir", str(out), "--quiet", *extra])


def read_predictions(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / "predictions.jsonl").read_text().splitlines()]


def test_writes_results(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_prompt(tmp_path, str(tiny_model_dir))
    assert run_cli(config, tmp_path / "out", "--max-samples", "5", "--batch-size", "2") == 0
    (directory,) = (tmp_path / "out").iterdir()
    assert re.fullmatch(r"vanilla_0shot_test_tiny-qwen2_results_\d{8}_\d{6}", directory.name)
    assert f"results: {directory}" in capsys.readouterr().out
    rows = read_predictions(directory)
    assert [r["sample_idx"] for r in rows] == list(range(5))
    assert all(set(r) == PREDICTION_FIELDS for r in rows)
    assert all(r["n_generated_tokens"] >= 1 and isinstance(r["correct"], bool) for r in rows)
    metrics = json.loads((directory / "metrics.json").read_text())
    assert METRIC_FIELDS <= set(metrics)
    assert (
        metrics["status"] == "complete"
        and metrics["n_samples"] == 5
        and metrics["session_name"] == directory.name
    )
    assert metrics["n_correct"] == sum(r["correct"] for r in rows)
    assert metrics["n_parse_failures"] == sum(r["parsed_answer"] is None for r in rows)
    kinds = generate_labeled(
        "test", 12
    )  # the builtin financial questions have kinds: accuracy per kind
    assert [r["kind"] for r in rows] == [kind for kind, _ in kinds[:5]]
    assert sum(k["n"] for k in metrics["by_kind"].values()) == 5
    assert sum(k["n_correct"] for k in metrics["by_kind"].values()) == metrics["n_correct"]
    assert (
        metrics["config"]["max_samples"] == 5
        and metrics["config"]["prompt_config"]["prompt_type"] == "vanilla"
    )
    rerun = yaml.safe_load((directory / "config.yaml").read_text())
    assert rerun["model"] == str(tiny_model_dir) and rerun["generation"]["max_new_tokens"] == 8


def test_same_samples_and_prompts_as_extraction(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The first N samples of the split, rendered exactly as `taskvec extract` renders them."""
    extraction = prepare(write_configs(tmp_path, str(tiny_model_dir), split="test", max_samples=4))
    prep = prepare_evaluation(
        tmp_path / "prompt.yaml", max_samples=4, output_dir=tmp_path / "results"
    )
    assert (
        [s.id for s in prep.samples]
        == [s.id for s in extraction.samples]
        == [f"test_{i}" for i in range(4)]
    )
    assert [p.text for p in prep.prompts] == [p.text for p in extraction.prompts]
    assert [len(ids) for ids in prep.ids] == [len(item.ids) for item in extraction.items]


@pytest.fixture(scope="module")
def tiny_prep(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[EvalPrepared, torch.nn.Module]:
    tmp = tmp_path_factory.mktemp("eval")
    prep = prepare_evaluation(write_prompt(tmp, str(tiny_model_dir)), max_samples=5)
    return prep, load_model(prep.model_ref, torch.float32, torch.device("cpu"))


def test_batched_generation_equals_batch_size_one(
    tiny_prep: tuple[EvalPrepared, torch.nn.Module],
) -> None:
    prep, model = tiny_prep
    assert len({len(ids) for ids in prep.ids}) > 1, (
        "prompts of different lengths exercise the left padding"
    )
    single = generate(model, prep.tokenizer, prep.ids, prep.prompt_config.generation, 1)
    batched = generate(model, prep.tokenizer, prep.ids, prep.prompt_config.generation, 3)
    assert batched == single
    assert all(len(out) == 8 or out[-1] == prep.tokenizer.eos_token_id for out in single)
    reference = generate_padded(model, prep.tokenizer, prep.ids, prep.prompt_config.generation, 1)
    assert single == reference, (
        "the continuous-batching path equals plain `generate` at batch size 1"
    )
    assert (
        generate(
            model, prep.tokenizer, prep.ids, prep.prompt_config.generation, 2, prefix_cache=False
        )
        == reference
    )


def test_stop_pattern_truncates_generation(
    tiny_prep: tuple[EvalPrepared, torch.nn.Module],
) -> None:
    """Each row stops at the first token whose decoded text completes the stop pattern."""
    prep, model = tiny_prep
    full = generate(model, prep.tokenizer, prep.ids, prep.prompt_config.generation, 5)
    text = prep.tokenizer.decode(full[0], skip_special_tokens=True)
    pattern = re.compile(re.escape(text[:2]))
    stopped = generate(
        model, prep.tokenizer, prep.ids, prep.prompt_config.generation, 5, stop=pattern
    )
    for out, ref in zip(stopped, full):
        assert out == ref[: len(out)]
        if pattern.search(prep.tokenizer.decode(out, skip_special_tokens=True)):
            assert not pattern.search(prep.tokenizer.decode(out[:-1], skip_special_tokens=True))
    assert len(stopped[0]) < len(full[0]) or len(text) <= 2


@pytest.mark.parametrize(
    ("text", "stops"),
    [
        ("Revenue grew. The answer is 12.5.\n", True),
        ("The answer is $1,234.50 million. Question:", True),
        ("The answer is -3.85%.\n", True),
        ("The answer is 12.", False),  # the next token may continue the number
        ("so the answer is 300 / 1200 = 0.25. Multiply", False),
        ("The answer is unclear. ", False),
    ],
)
def test_answer_stop_pattern(text: str, stops: bool) -> None:
    pattern = stopping.answer_stop_pattern("The answer is {answer}.")
    assert pattern is not None and bool(pattern.search(text)) is stops
    assert stopping.answer_stop_pattern("{answer}") is None


@pytest.mark.parametrize(
    ("text", "stops"),
    [
        ("walk is a regular verb, so add -ed: walked. The answer is walked.", True),
        ('The answer is "went".', True),
        ("The answer is: New Delhi.", True),
        ("The answer is walked", False),  # the closing full stop is part of the sentence
        # more than four words is not an answer
        (
            "The answer is the past tense of the verb go.",
            False,
        ),
        ("The answer is 12.", False),  # after a digit the full stop may be a decimal point
        ("The answer is 12.5.\n", True),
    ],
)
def test_text_answer_stop_pattern(text: str, stops: bool) -> None:
    pattern = stopping.answer_stop_pattern("The answer is {answer}.", "text")
    assert pattern is not None and bool(pattern.search(text)) is stops


def test_stop_pattern_follows_the_answer_type() -> None:
    fmt = "The answer is {answer}."
    words = [Sample("w", "walk", None, "walked")]
    numbers = [Sample("n", "q", 12.5, "12.5"), *words]
    assert stopping.stop_pattern(fmt, words) == stopping.answer_stop_pattern(fmt, "text")
    assert (
        stopping.stop_pattern(fmt, numbers)
        == stopping.answer_stop_pattern(fmt, "number")
        == stopping.answer_stop_pattern(fmt)
    )
    # no closing punctuation: the line ends it
    assert stopping.stop_pattern("Answer: {answer}", words) == re.compile(
        r"Answer:\s*:?\s*" + stopping._TEXT_ANSWER + r"\s*\n(?:(?<!\d\.)|\s)", re.IGNORECASE
    )
    assert stopping.stop_pattern("{answer}", words) is None


def test_a_text_answer_row_stops_at_its_answer_sentence(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word task's cot row ends with "The answer is sold." instead of running on to max_new_tokens."""
    config = write_prompt(
        tmp_path,
        str(tiny_model_dir),
        "words_chat_cot_5shot.yaml",
        generation={"max_new_tokens": 40},
    )
    prep = prepare_evaluation(config, max_samples=3, output_dir=tmp_path / "out")
    model = load_model(prep.model_ref, torch.float32, torch.device("cpu"))
    script = prep.tokenizer("The answer is sold. Question", add_special_tokens=False)["input_ids"]
    assert len({ids[-1] for ids in prep.ids}) == 1, "every chat prompt ends with the same token"
    script_model(model, [prep.ids[0][-1], *script])
    monkeypatch.setattr(ev, "load_model", lambda *args: model)
    rows = read_predictions(ev.run_evaluation(prep, progress=False).directory)
    assert [r["generation"] for r in rows] == ["The answer is sold."] * 3
    assert [r["finish_reason"] for r in rows] == ["answer"] * 3 and not any(
        r["truncated"] for r in rows
    )
    assert [r["parsed_answer"] for r in rows] == ["sold"] * 3


def test_scoring_uses_the_parser(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Generations that state the gold answer (in another notation for odd samples) are all scored correct."""
    prep = prepare_evaluation(
        write_prompt(tmp_path, str(tiny_model_dir)), max_samples=4, output_dir=tmp_path / "out"
    )
    answers = [
        f"The answer is {s.answer_text}." if i % 2 else f"So {s.answer:,.4f} is it"
        for i, s in enumerate(prep.samples)
    ]

    class FakeGenerator:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.stats = GenerationStats()

        def run(self, prompt_ids: list[list[int]], skip: Any = (), on_step: Any = None) -> Any:
            for i, a in enumerate(answers):
                yield Finished(i, prep.tokenizer(a, add_special_tokens=False)["input_ids"], "eos")

    monkeypatch.setattr(loop, "Generator", FakeGenerator)
    result = ev.run_evaluation(prep, progress=False)
    rows = read_predictions(result.directory)
    assert [r["generation"] for r in rows] == answers
    assert all(r["correct"] for r in rows) and result.metrics.accuracy == 1.0
    assert [r["parse_method"] for r in rows] == ["last_number", "answer_phrase"] * 2
    assert (
        rows[1]["parsed_answer"] == prep.samples[1].answer
        and rows[1]["gold_text"] == prep.samples[1].answer_text
    )


def test_never_overwrites(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = write_prompt(tmp_path, str(tiny_model_dir))
    for _ in range(2):
        assert run_cli(config, tmp_path / "out", "--max-samples", "1") == 0
    dirs = sorted((tmp_path / "out").iterdir())
    assert len(dirs) == 2 and all((d / "metrics.json").is_file() for d in dirs)
    first = create_unique_dir(tmp_path / "u", "name")
    assert [first.name, create_unique_dir(tmp_path / "u", "name").name] == ["name", "name_2"]


BAD = [
    (
        "unknown split",
        ["--split", "validation"],
        {},
        "split: 'validation' is not a split of the dataset; use one of: train, test",
    ),
    ("bad tag", ["--tag", "a/b"], {}, "field 'tag'"),
    ("bad device", ["--device", "tpu"], {}, "field 'device'"),
    ("bad dtype", ["--dtype", "float8"], {}, "field 'dtype'"),
    (
        "missing model",
        ["--model", "/no/such/model/dir"],
        {},
        "model: directory '/no/such/model/dir' not found",
    ),
    ("unknown prompt key", [], {"n_shots": 3}, "unknown key 'n_shots'"),
    (
        "unknown demonstration split",
        [],
        {"n_shot": 2, "demonstrations": {"split": "dev"}},
        "demonstrations.split: 'dev'",
    ),
    ("too many shots", [], {"n_shot": 60}, "n_shot=60"),
]


@pytest.mark.parametrize(("what", "args", "changes", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_input(
    what: str,
    args: list[str],
    changes: dict[str, Any],
    expected: str,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_prompt(tmp_path, str(tiny_model_dir), **changes)
    assert run_cli(config, tmp_path / "out", *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskvec: error: ") and "\n" not in err and expected in err, err
    assert not (tmp_path / "out").exists(), "nothing may be written on bad input"


@pytest.mark.parametrize("flag", ["--max-samples", "--batch-size"])
def test_numeric_flags_name_the_flag(
    flag: str, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_prompt(tmp_path, str(tiny_model_dir))
    with pytest.raises(SystemExit) as exit_:
        run_cli(config, tmp_path / "out", flag, "0")
    assert exit_.value.code == 2 and not (tmp_path / "out").exists()
    assert capsys.readouterr().err == (
        f"taskvec evaluate: error: argument {flag}: must be 1 or more, got 0 "
        "(see `taskvec evaluate --help`)\n"
    )


def test_tag_names_the_results_directory(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = write_prompt(tmp_path, str(tiny_model_dir))
    assert run_cli(config, tmp_path / "out", "--max-samples", "1", "--tag", "plural") == 0
    (results,) = (tmp_path / "out").iterdir()
    assert results.name.startswith("plural_tiny-qwen2_results_")


def test_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(tmp_path / "nope.yaml", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskvec: error: --config: file") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_run_py_entry_point() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (
        proc.returncode == 0
        and "--max-samples" in proc.stdout
        and "prompt config YAML" in proc.stdout
    )


def test_predictions_are_appended_as_samples_finish(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interrupted after 3 predictions: they are on disk, status `interrupted`, and the message
    says how to resume."""
    config = write_prompt(tmp_path, str(tiny_model_dir))
    original = PredictionLog.append
    calls: list[int] = []

    def append_then_stop(self: PredictionLog, row: dict[str, Any]) -> None:
        original(self, row)
        calls.append(row["sample_idx"])
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(PredictionLog, "append", append_then_stop)
    with pytest.raises(
        Interrupted,
        match=r"interrupted; 3 of 6 predictions are saved .* resume with: taskvec evaluate --resume ",
    ):
        ev.evaluate(
            config, progress=False, max_samples=6, batch_size=2, output_dir=tmp_path / "out"
        )
    (directory,) = (tmp_path / "out").iterdir()
    assert sorted(r["sample_idx"] for r in read_predictions(directory)) == sorted(calls)
    metrics = json.loads((directory / "metrics.json").read_text())
    assert (
        metrics["status"] == "interrupted" and metrics["n_samples"] == 3 and metrics["n_total"] == 6
    )


def test_resume_gives_the_uninterrupted_file(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Keep 2 predictions and a torn third line of a finished run; --resume redoes the rest into
    the same file."""
    config = write_prompt(tmp_path, str(tiny_model_dir))
    assert run_cli(config, tmp_path / "full", "--max-samples", "6", "--batch-size", "2") == 0
    (full,) = (tmp_path / "full").iterdir()
    expected = (full / "predictions.jsonl").read_text()
    lines = expected.splitlines(keepends=True)
    metrics = json.loads((full / "metrics.json").read_text())
    metrics["status"] = "interrupted"
    (full / "metrics.json").write_text(json.dumps(metrics))
    (full / "predictions.jsonl").write_text(lines[4] + lines[1] + lines[2][:25])
    capsys.readouterr()
    assert main(["evaluate", "--resume", str(full), "--quiet", "--batch-size", "3"]) == 0
    assert (full / "predictions.jsonl").read_text() == expected
    after = json.loads((full / "metrics.json").read_text())
    assert (
        after["status"] == "complete"
        and after["n_samples"] == 6
        and [r["n_kept"] for r in after["runs"]] == [0, 2]
    )
    assert f"results: {full}" in capsys.readouterr().out
    assert main(["evaluate", "--resume", str(full), "--quiet"]) == 2
    assert "already complete" in capsys.readouterr().err


def test_resume_refuses_a_changed_config(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_prompt(tmp_path, str(tiny_model_dir))
    assert run_cli(config, tmp_path / "out", "--max-samples", "2") == 0
    (directory,) = (tmp_path / "out").iterdir()
    metrics = json.loads((directory / "metrics.json").read_text())
    (directory / "metrics.json").write_text(json.dumps({**metrics, "status": "interrupted"}))
    before = (directory / "predictions.jsonl").read_text()
    capsys.readouterr()
    assert main(["evaluate", "--resume", str(directory), "--max-samples", "3", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("taskvec: error: --resume: the config differs")
        and "max_samples: session 2, now 3" in err
        and "\n" not in err
    )
    other = write_prompt(tmp_path, str(tiny_model_dir), n_shot=1)
    assert main(["evaluate", "--resume", str(directory), "--config", str(other), "--quiet"]) == 2
    assert "prompt_config.n_shot" in capsys.readouterr().err
    assert (directory / "predictions.jsonl").read_text() == before
    assert main(["evaluate", "--resume", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "not an evaluation results directory" in capsys.readouterr().err


def test_torn_last_line_is_cut_and_redone(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "predictions.jsonl")
    log.append({"sample_idx": 0, "generation": "a"})
    log.append({"sample_idx": 2, "generation": "b"})
    log.close()
    with (tmp_path / "predictions.jsonl").open("a") as f:
        f.write('{"sample_idx": 1, "gener')
    assert sorted(log.read()) == [0, 2]
    assert (tmp_path / "predictions.jsonl").read_text().count("\n") == 2
    part = PredictionLog(log_path(tmp_path, 1))  # a second rank's part
    part.append({"sample_idx": 1, "generation": "c"})
    part.close()
    rows = read_all(tmp_path)
    merge(tmp_path, rows)
    assert [
        json.loads(x)["generation"]
        for x in (tmp_path / "predictions.jsonl").read_text().splitlines()
    ] == ["a", "c", "b"]
    assert not (tmp_path / "predictions.rank1.jsonl").exists()


def test_truncated_output_is_not_an_answer(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Output that hits max_new_tokens without an answer sentence is `truncated` and wrong, and
    metrics say so."""
    prep = prepare_evaluation(
        write_prompt(tmp_path, str(tiny_model_dir)), max_samples=3, output_dir=tmp_path / "out"
    )
    texts = [
        f"{prep.samples[0].answer_text}",
        f"The answer is {prep.samples[1].answer_text}.\n",
        "0 0 0 0",
    ]
    reasons = ["length", "answer", "length"]

    class FakeGenerator:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.stats = GenerationStats()

        def run(self, prompt_ids: list[list[int]], skip: Any = (), on_step: Any = None) -> Any:
            for i, (t, r) in enumerate(zip(texts, reasons)):
                yield Finished(i, prep.tokenizer(t, add_special_tokens=False)["input_ids"], r)

    monkeypatch.setattr(loop, "Generator", FakeGenerator)
    result = ev.run_evaluation(prep, progress=False)
    rows = read_predictions(result.directory)
    assert [r["truncated"] for r in rows] == [True, False, True]
    assert [r["correct"] for r in rows] == [False, True, False]
    assert (
        rows[0]["correct_if_not_truncated"] is True
        and rows[0]["parsed_answer"] == prep.samples[0].answer
    )
    m = result.metrics
    assert (m.n_truncated, m.n_correct, m.accuracy) == (2, 1, 1 / 3)
    assert m.accuracy_with_fallback == pytest.approx(2 / 3) and "truncated" in str(
        m.truncated_policy
    )


def test_quiet_prints_only_the_results(
    tiny_model_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = write_prompt(tmp_path, str(tiny_model_dir))
    assert run_cli(config, tmp_path / "out", "--max-samples", "2") == 0
    out, err = capfd.readouterr()
    assert err == "", "no progress bar, loading bar or log line"
    lines = out.splitlines()
    assert (
        len(lines) == 3 and lines[0].startswith("results: ") and lines[1].startswith("accuracy: ")
    )
    assert re.fullmatch(
        r"generated \d+ tokens in [\d.]+ s \([\d.]+ tokens/s, prefill \d+% of model time\)",
        lines[2],
    )


def test_one_pass_writes_the_extraction_session(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--extract: the same prefill writes a normal session with `taskvec extract`'s vectors; each
    names the other."""
    from taskvec.schemas.metrics import Metrics
    from taskvec.session.hints import after_evaluate
    from taskvec.session.reader import load_session

    extract = write_configs(
        tmp_path,
        str(tiny_model_dir),
        prompt="vanilla_5shot_answer.yaml",
        split="test",
        max_samples=5,
        output_dir=str(tmp_path / "sessions"),
    )
    prompt = yaml.safe_load((tmp_path / "prompt.yaml").read_text())
    prompt.update(generation={"max_new_tokens": 4, "do_sample": False})
    (tmp_path / "prompt.yaml").write_text(yaml.safe_dump(prompt))
    args = ["--max-samples", "5", "--batch-size", "2", "--extract", str(extract)]
    assert run_cli(tmp_path / "prompt.yaml", tmp_path / "out", *args) == 0
    (results,) = (tmp_path / "out").iterdir()
    assert "extraction session (same pass): " in capsys.readouterr().out
    metrics = json.loads((results / "metrics.json").read_text())
    one_pass = load_session(metrics["extraction_session"], tmp_path)
    sessions = tmp_path / "sessions"
    (hint,) = after_evaluate(
        results, Metrics.model_validate(metrics), Path("outputs")
    )  # the one-pass session, by stem
    assert hint == f"taskvec correlate vanilla_5shot_test --output-dir {sessions}"
    assert (
        one_pass.metadata["evaluation_results"] == str(results)
        and one_pass.metadata["status"] == "complete"
    )
    assert main(["extract", "--config", str(extract), "--quiet"]) == 0
    separate = load_session(
        next(
            p for p in (tmp_path / "sessions" / "task_vector").iterdir() if p.name != one_pass.name
        ).name,
        tmp_path / "sessions",
    )
    assert one_pass.sample_ids == separate.sample_ids == [f"test_{i}" for i in range(5)]
    assert one_pass.keys == separate.keys
    for key in separate.keys:
        torch.testing.assert_close(
            one_pass.vectors(key), separate.vectors(key), atol=1e-5, rtol=1e-4
        )
        torch.testing.assert_close(one_pass.mean(key), separate.mean(key), atol=1e-5, rtol=1e-4)
    (hint,) = after_evaluate(
        results, Metrics.model_validate({**metrics, "extraction_session": None}), sessions
    )
    assert hint.startswith(f"taskvec correlate {separate.name} {results} --output-dir {sessions}")
    capsys.readouterr()
    assert (
        main(
            [
                "correlate",
                one_pass.name,
                "--output-dir",
                str(tmp_path / "sessions"),
                "--out",
                str(tmp_path / "plots"),
            ]
        )
        == 0
    )
    assert "joined by sample_id: 5 matched" in capsys.readouterr().out


def test_one_pass_refuses_other_prompts(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extract = write_configs(
        tmp_path,
        str(tiny_model_dir),
        prompt="vanilla_0shot_answer.yaml",
        split="train",
        max_samples=3,
    )
    assert (
        run_cli(
            tmp_path / "prompt.yaml",
            tmp_path / "out",
            "--max-samples",
            "3",
            "--extract",
            str(extract),
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err == (
        "taskvec: error: --extract: split differs: extraction config 'train', evaluation 'test' "
        "(extraction defaults to train, evaluation to test); make them equal"
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "out" / "task_vector").exists()
