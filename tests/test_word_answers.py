"""Text answers end to end: file/HF datasets, evaluation scoring, the patching scorer, splits, flat sweeps."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

import taskvec.evaluation.loop as loop
import taskvec.evaluation.run as ev
from taskvec.cli import main
from taskvec.data import DatasetConfig, available_splits, load_split
from taskvec.data.tasks import WORD_TASKS, task_rows, word_split
from taskvec.errors import TaskvecError
from taskvec.evaluation.answers import extract_text_answer, score_text
from taskvec.evaluation.prepare import prepare_evaluation
from taskvec.model.generation import Finished, GenerationStats
from taskvec.patching.plot import plot_patching
from taskvec.patching.run import patch
from taskvec.patching.scoring import AnswerScorer, first_token_forms
from taskvec.patching.sweep import best_layer
from taskvec.schemas.patching import PatchSummary
from tests.conftest import REPO, write_configs
from tests.tiny import make_tokenizer

WORDS = ["Paris", "Prague", "euro", "yen", "A", "profit", "loss", "New Delhi"]
CORPUS = [
    "Paris Prague euro yen profit loss New Delhi apple river stone A B C",
    "the capital of France is Paris, of Japan Tokyo",
]


def metaspace_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style (Llama, Mistral) tokenizer: words carry a '▁' marker instead of a
    byte-level 'Ġ'."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "</s>"],
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ,"),
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>")


def bytelevel_tokenizer() -> PreTrainedTokenizerFast:
    """A GPT-2 / Qwen / SmolLM2 style byte-level BPE, trained so ' Paris' and 'Paris' split differently."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


FAMILIES = {
    "byte_level_bpe": bytelevel_tokenizer,
    "sentencepiece_metaspace": metaspace_tokenizer,
    "tiny_project": make_tokenizer,
}


# --- defect 1: text answers in file and HF datasets, scored in evaluation ---------------------------------


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_file_dataset_keeps_text_answers(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "d.jsonl",
        [{"question": "France", "answer": "Paris"}, {"question": "Year?", "answer": 1984}],
    )
    samples = load_split(
        DatasetConfig(source="file", path=path, answer_type="text", test_fraction=0.5), "all"
    )
    assert [(s.answer, s.answer_text) for s in samples] == [(None, "Paris"), (None, "1984")]
    with pytest.raises(TaskvecError, match="answer_type: text"):
        load_split(DatasetConfig(source="file", path=path), "all")


def test_hf_dataset_keeps_text_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda name, split: [{"question": "Japan", "answer": "yen"}]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    samples = load_split(
        DatasetConfig(source="hf", name="owner/words", answer_type="text"), "train"
    )
    assert samples[0].answer is None and samples[0].answer_text == "yen"


@pytest.mark.parametrize(
    ("generation", "gold", "case_sensitive", "read", "correct"),
    [
        (" Paris\nuser", "Paris", True, "Paris", True),
        ("Paris.", "Paris", True, "Paris", True),
        ("paris", "Paris", True, "paris", False),
        ("paris", "Paris", False, "paris", True),
        ("Parisian", "Paris", True, "Parisian", False),
        ("The answer is New Delhi.", "New Delhi", True, "New Delhi", True),
        ('"euro"', "euro", True, "euro", True),
        ("\n\nyen", "yen", True, "yen", True),
        ("", "yen", True, None, False),
    ],
)
def test_text_scoring(
    generation: str, gold: str, case_sensitive: bool, read: str | None, correct: bool
) -> None:
    assert score_text(generation, gold, case_sensitive) == (read, correct)
    assert extract_text_answer(generation, len(gold.split())) == read


def test_evaluation_scores_text_answers(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        {"question": q, "answer": a}
        for q, a in [("France", "Paris"), ("Japan", "yen"), ("Italy", "Rome"), ("Peru", "sol")]
    ]
    cfg = yaml.safe_load((REPO / "configs" / "smollm2-135m" / "words_chat_0shot.yaml").read_text())
    cfg.update(
        model=str(tiny_model_dir),
        dataset={
            "source": "file",
            "path": str(_write_jsonl(tmp_path / "d.jsonl", rows)),
            "answer_type": "text",
        },
    )
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    prep = prepare_evaluation(tmp_path / "p.yaml", split="all", output_dir=tmp_path / "out")
    outputs = ["Paris", " yen.", "rome", "Lima"]

    class Scripted:
        """Stands in for the generator: these outputs, each ending at eos."""

        def __init__(
            self,
            model: object,
            settings: object,
            eos: object,
            batch_size: int,
            tok: object,
            *args: object,
            **kwargs: object,
        ) -> None:
            self.tok, self.stats = tok, GenerationStats()

        def run(
            self, ids: list[list[int]], skip: object = (), on_step: object = None
        ) -> Iterator[Finished]:
            for i, text in enumerate(outputs):
                yield Finished(i, self.tok(text, add_special_tokens=False)["input_ids"], "eos")  # type: ignore[operator]

    monkeypatch.setattr(loop, "Generator", Scripted)
    result = ev.run_evaluation(prep, progress=False)
    lines = [
        json.loads(line)
        for line in (result.directory / "predictions.jsonl").read_text().splitlines()
    ]
    assert [r["correct"] for r in lines] == [True, True, False, False]
    assert (
        [r["parse_method"] for r in lines] == ["text"] * 4
        and lines[2]["parsed_answer"] == "rome"
        and lines[0]["gold"] == "Paris"
    )
    assert result.metrics.accuracy == 0.5


# --- defects 2-4: the patching scorer, per tokenizer family


@pytest.mark.parametrize("family", list(FAMILIES))
def test_scorer_keeps_case_and_knows_every_first_token_form(family: str) -> None:
    tok = FAMILIES[family]()
    for word in WORDS:
        forms = first_token_forms(tok, word)
        starts = {
            next(t for t in tok.encode(form, add_special_tokens=False) if tok.decode([t]).strip())
            for form in (word, " " + word)
        }
        assert set(forms) == starts
        for t in forms:  # each form decodes to the start of the word, case as written
            assert word.startswith(tok.decode([t]).strip()) and tok.decode([t]).strip()
    scorer = AnswerScorer(tok, WORDS)
    for word in WORDS:
        # a chat turn starts without a space, plain text after "Answer:" with one
        for text in (
            word,
            " " + word,
        ):
            assert generate_and_score(scorer, tok, word, text + " and more"), (family, word, text)
        for other in (word.lower(), word.upper()):
            assert generate_and_score(scorer, tok, word, " " + other) == (other == word)


def generate_and_score(
    scorer: AnswerScorer, tok: PreTrainedTokenizerFast, gold: str, text: str
) -> bool:
    """Feed the tokens of `text` as a greedy continuation would come, stopping where the runner
    stops; score it."""
    ids = tok.encode(text, add_special_tokens=False)
    for k in range(1, len(ids) + 1):
        so_far = tok.decode(ids[:k])
        if k == scorer.max_new_tokens or not scorer.keep(gold, so_far):
            return scorer.correct(gold, so_far)
    return scorer.correct(gold, tok.decode(ids))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_restricted_prediction_reads_the_no_space_form(family: str) -> None:
    tok = FAMILIES[family]()
    scorer = AnswerScorer(tok, ["euro", "yen"])
    assert scorer.labels == ["euro", "yen"]
    logits = torch.zeros(len(scorer.watch))
    logits[scorer.watch.index(tok.encode("euro", add_special_tokens=False)[0])] = (
        5.0  # the chat-turn form
    )
    assert scorer.restricted(logits) == "euro"


def test_multi_token_answers_need_the_whole_word() -> None:
    tok = bytelevel_tokenizer()
    scorer = AnswerScorer(tok, ["Paris", "Prague", "New Delhi"])
    assert scorer.max_new_tokens >= 2 and "greedy continuation" in scorer.rule
    assert (
        scorer.correct("Paris", " Paris\n")
        and not scorer.correct("Paris", " Prague")
        and not scorer.correct("Paris", " P")
    )
    assert not scorer.correct("New Delhi", " New York") and scorer.correct(
        "New Delhi", " New Delhi"
    )
    assert (
        scorer.keep("Paris", " Par")
        and not scorer.keep("Paris", " Pra")
        and scorer.keep("New Delhi", " New")
    )
    assert not scorer.keep("Paris", " Paris")  # spelled: stop, it is correct whatever follows
    # first tokens collide (" P"), so a restricted argmax would be ambiguous: none is offered
    if len({t for w in ("Paris", "Prague") for t in first_token_forms(tok, w)}) < 4:
        assert scorer.labels == [] and scorer.restricted(torch.zeros(0)) is None


# --- defect 5: one file split deterministically, overlapping splits refused


def test_path_alone_is_split_disjoint_and_deterministic(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "d.jsonl", [{"question": f"w{i}", "answer": f"W{i}"} for i in range(30)]
    )
    cfg = DatasetConfig(source="file", path=path, answer_type="text", test_fraction=0.3, seed=4)
    train, test, every = (load_split(cfg, s) for s in ("train", "test", "all"))
    assert len(test) == 9 and len(train) == 21 and not {s.id for s in train} & {s.id for s in test}
    assert sorted(s.id for s in train + test) == sorted(s.id for s in every)
    assert [s.id for s in test] == [s.id for s in load_split(cfg, "test")]
    assert [s.id for s in test] != [
        s.id for s in load_split(cfg.model_copy(update={"seed": 5}), "test")
    ]
    assert available_splits(cfg) == ["train", "test", "all"]
    with pytest.raises(ValueError, match="one file for two splits"):
        DatasetConfig(source="file", splits={"train": path, "test": path})


def _file_patch_configs(tmp: Path, model_dir: Path, **overrides: object) -> Path:
    rows = [{"question": f"word{i}", "answer": f"W{i % 7}"} for i in range(60)]
    data = _write_jsonl(tmp / "words.jsonl", rows)
    for shot in (0, 5):
        cfg = yaml.safe_load(
            (REPO / "configs" / "smollm2-135m" / f"words_plain_{shot}shot.yaml").read_text()
        )
        cfg.update(
            model=str(model_dir),
            dataset={"source": "file", "path": str(data), "answer_type": "text"},
        )
        (tmp / f"p{shot}.yaml").write_text(yaml.safe_dump(cfg))
    patch_cfg = {
        "fewshot_prompt_config": "p5.yaml",
        "zero_shot_prompt_config": "p0.yaml",
        "layers": [0, 2],
        "tv_max_samples": 6,
        "dev_max_samples": 4,
        "test_max_samples": 5,
        "output_dir": str(tmp / "results"),
        "device": "cpu",
    }
    patch_cfg.update(overrides)
    (tmp / "patch.yaml").write_text(yaml.safe_dump(patch_cfg))
    return tmp / "patch.yaml"


def test_patching_a_word_file_uses_disjoint_queries(tmp_path: Path, tiny_model_dir: Path) -> None:
    summary = patch(_file_patch_configs(tmp_path, tiny_model_dir), progress=False).summary
    ids = summary.per_task[0].sample_ids
    assert len(ids["vector"]) == 6 and len(ids["dev"]) == 4 and len(ids["test"]) == 5
    assert not set(ids["vector"]) & set(ids["dev"]) and not (
        set(ids["vector"]) | set(ids["dev"])
    ) & set(ids["test"])
    assert "greedy continuation" in summary.per_task[0].scoring


def test_overlapping_splits_are_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(
        TaskvecError, match="(vector|dev) and test queries share .*use disjoint splits"
    ):
        patch(
            _file_patch_configs(
                tmp_path, tiny_model_dir, test_split="train", tv_max_samples=1, dev_max_samples=4
            ),
            progress=False,
        )


# --- defect 6: a flat sweep has no best layer


def test_flat_sweep_has_no_best_layer() -> None:
    assert best_layer({0: 0.0, 1: 0.0, 2: 0.0}, 0.0) is None
    assert best_layer({0: 0.1, 1: 0.1}, 0.1) is None
    assert best_layer({0: 0.1, 1: 0.5, 2: 0.5}, 0.1) == 1


def _summary(curve: dict[int, float], best: int | None) -> dict[str, Any]:
    dev = {"zero_shot": 0.0, "few_shot": 0.9, "task_vector": curve}
    task = {"task": "t", "dev": dict(dev), "test": {}}
    return {
        "per_task": [task],
        "dev": {**dev, "layers": list(curve)},
        "best_layer": best,
        "n_layers": len(curve),
        "mode": "replace",
        "scale": 1.0,
        "model": "m",
        "test": {"task_vector_shared": 0.0},
    }


@pytest.mark.parametrize(
    ("curve", "best"), [({0: 0.0, 1: 0.0, 2: 0.0}, None), ({0: 0.0, 1: 0.6, 2: 0.1}, 1)]
)
def test_plot_stars_only_a_real_best_layer(
    tmp_path: Path, curve: dict[int, float], best: int | None
) -> None:
    from taskvec.analysis.plotting import new_figure

    figures: list[Any] = []

    def keep(fig: Any, path: Path) -> Path:
        figures.append(fig)
        return path

    summary = PatchSummary.model_validate(_summary(curve, best))
    plot_patching(summary, tmp_path / "p.png", new_figure, keep)
    ax = figures[0].axes[0]
    stars = [line for line in ax.lines if line.get_marker() == "*"]
    assert len(stars) == (best is not None)
    assert ("no effect" in ax.get_title()) == (best is None)


# --- the suite


@pytest.mark.parametrize("name", list(WORD_TASKS))
def test_word_tasks_are_deterministic_disjoint_and_large_enough(name: str) -> None:
    train, test = task_rows(name, "train"), task_rows(name, "test")
    assert len(train) >= 100 and len(test) >= 50
    assert not {x for x, _ in train} & {x for x, _ in test}
    assert len({x for x, _ in train}) == len(train)
    assert word_split(name, "test", 7) == word_split(name, "test", 7)
    assert all(
        s.answer is None and s.answer_text and s.question for s in word_split(name, "train", 500)
    )


def test_word_task_facts_spot_checks() -> None:
    facts = {
        ("capital", "France"): "Paris",
        ("capital", "Japan"): "Tokyo",
        ("currency", "Japan"): "yen",
        ("en_fr", "dog"): "chien",
        ("en_es", "dog"): "perro",
        ("plural", "child"): "children",
        ("past_tense", "go"): "went",
        ("fin_antonym", "bull"): "bear",
        ("fin_antonym", "loss"): "profit",
        ("ticker", "AAPL"): "Apple",
        ("currency_code", "JPY"): "yen",
        ("first_letter", "apple"): "A",
        ("uppercase", "apple"): "APPLE",
    }
    for (name, x), y in facts.items():
        assert dict(WORD_TASKS[name].pairs())[x] == y


@pytest.mark.parametrize("prompt", ["words_chat_cot_0shot.yaml", "words_chat_cot_5shot.yaml"])
def test_cot_word_configs_validate(
    prompt: str, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped cot configs pass `taskvec validate`; other tasks have no rationales, so cot
    5-shot names the fix."""
    config = write_configs(tmp_path, str(tiny_model_dir), prompt, split="test", max_samples=4)
    assert main(["validate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    prompt_cfg = yaml.safe_load((tmp_path / "prompt.yaml").read_text())
    # in the first prompt printed
    shown = "The answer is" if prompt_cfg["n_shot"] else "Give the past tense of the verb."
    assert "config OK" in out and shown in out
    (tmp_path / "prompt.yaml").write_text(
        yaml.safe_dump({**prompt_cfg, "dataset": {**prompt_cfg["dataset"], "name": "plural"}})
    )
    expected, err = (
        (0, "") if prompt_cfg["n_shot"] == 0 else (2, "prompt_type: cot needs a rationale")
    )
    assert main(["validate", "--config", str(config)]) == expected
    assert err in capsys.readouterr().err
