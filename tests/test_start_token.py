"""The start token: resolved once per prompt config and tokenizer, the same in every flow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tokenizers import processors
from transformers import PreTrainedTokenizerFast

from taskvec.cli import main
from taskvec.data.base import Sample
from taskvec.errors import TaskvecError
from taskvec.evaluation.prepare import prepare_evaluation
from taskvec.patching.prompts import prepare_patching
from taskvec.prompts.build import build_prompts
from taskvec.prompts.config import PromptConfig
from taskvec.prompts.render import start_token
from taskvec.session.reader import load_session
from tests.conftest import REPO, write_configs
from tests.test_patching import tiny_configs
from tests.tiny import make_tokenizer

EOT = "<|endoftext|>"
QUERY = Sample("q0", "dogs", None, "dog")


def words_config(**changes: object) -> PromptConfig:
    raw = yaml.safe_load((REPO / "configs/smollm2-135m/words_plain_0shot.yaml").read_text())
    return PromptConfig.model_validate({**raw, **changes})


def bos_adding_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny tokenizer, but adding `<|im_start|>` in front of every text as Llama's adds <s>."""
    tok = make_tokenizer()
    bos = tok.convert_tokens_to_ids("<|im_start|>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)]
    )
    return tok


def ids_of(cfg: PromptConfig, tok: PreTrainedTokenizerFast) -> list[int]:
    ((_, ids),) = build_prompts(cfg, [QUERY], [], tok)
    return ids


def test_a_plain_prompt_begins_with_one_start_token() -> None:
    tok = make_tokenizer()
    bare = tok("dogs\nAnswer:", add_special_tokens=False)["input_ids"]
    eot = tok.convert_tokens_to_ids(EOT)
    assert ids_of(words_config(), tok) == [eot, *bare]
    assert start_token(words_config(), tok).record() == {
        "setting": "auto",
        "token": EOT,
        "added_by": "prompt",
    }
    assert ids_of(words_config(start_token="off"), tok) == bare
    assert ids_of(words_config(start_token=False), tok) == bare
    im = tok.convert_tokens_to_ids("<|im_start|>")
    assert ids_of(words_config(start_token="<|im_start|>"), tok) == [im, *bare]


def test_chat_prompts_add_nothing_unless_told() -> None:
    tok = make_tokenizer()
    chat = words_config(use_chat_template=True)
    ((prompt, ids),) = build_prompts(chat, [QUERY], [], tok)
    assert prompt.text.startswith("<|im_start|>") and ids[0] != tok.convert_tokens_to_ids(EOT)
    assert start_token(chat, tok).added_by == "chat template"
    told = words_config(use_chat_template=True, start_token=EOT)
    assert ids_of(told, tok) == [tok.convert_tokens_to_ids(EOT), *ids]


def test_a_tokenizer_that_adds_its_own_start_token_keeps_it_once() -> None:
    tok = bos_adding_tokenizer()
    bos, eot = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids(EOT)
    bare = tok("dogs\nAnswer:", add_special_tokens=False)["input_ids"]
    assert ids_of(words_config(), tok) == [bos, *bare]
    assert start_token(words_config(), tok).record()["added_by"] == "tokenizer"
    assert ids_of(words_config(start_token=EOT), tok) == [eot, *bare]
    assert ids_of(words_config(start_token="off"), tok) == bare


def test_a_start_token_that_is_not_one_token_is_refused() -> None:
    with pytest.raises(TaskvecError, match="start_token: 'two words' is not one token"):
        ids_of(words_config(start_token="two words"), make_tokenizer())
    with pytest.raises(ValueError, match="start_token"):
        words_config(start_token="")


def plain_extraction(tmp: Path, model_dir: Path, setting: str) -> Path:
    config = write_configs(
        tmp, str(model_dir), prompt="words_plain_0shot.yaml", max_samples=6, split="test"
    )
    prompt = yaml.safe_load((tmp / "prompt.yaml").read_text())
    (tmp / "prompt.yaml").write_text(yaml.safe_dump({**prompt, "start_token": setting}))
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    (session,) = (tmp / "out" / "task_vector").iterdir()
    return session


@pytest.mark.parametrize("setting", ["auto", "off"])
def test_extraction_reads_the_start_token_at_first_and_records_it(
    tmp_path: Path, tiny_model_dir: Path, setting: str
) -> None:
    s = load_session(plain_extraction(tmp_path, tiny_model_dir, setting))
    assert s.metadata["start_token"]["token"] == (EOT if setting == "auto" else None)
    assert all(p["prompt"].startswith(EOT) == (setting == "auto") for p in s.prompts)
    first = s.vectors(f"layer_{s.layers[-1]}_pos_first")
    same = bool((first == first[0]).all())
    assert same == (setting == "auto")  # the start token, at position 0, is every prompt's first


def test_evaluation_and_patching_build_the_same_start(tmp_path: Path, tiny_model_dir: Path) -> None:
    raw = yaml.safe_load((REPO / "configs/smollm2-135m/words_plain_0shot.yaml").read_text())
    raw.update(model=str(tiny_model_dir), generation={"max_new_tokens": 2, "do_sample": False})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "eval"
    args = ["--output-dir", str(out), "--max-samples", "2", "--quiet"]
    assert main(["evaluate", "--config", str(tmp_path / "p.yaml"), *args]) == 0
    (directory,) = out.iterdir()
    metrics = json.loads((directory / "metrics.json").read_text())
    assert metrics["start_token"] == {"setting": "auto", "token": EOT, "added_by": "prompt"}
    prep = prepare_evaluation(tmp_path / "p.yaml", max_samples=2, output_dir=out)
    eot = prep.tokenizer.convert_tokens_to_ids(EOT)
    assert all(ids[0] == eot and eot not in ids[1:] for ids in prep.ids)
    patch = prepare_patching(tiny_configs(tmp_path, tiny_model_dir))
    assert (
        patch.start_tokens["zero_shot"]["token"] == EOT == patch.start_tokens["few_shot"]["token"]
    )
    for task in patch.tasks:
        prompts = [*task.vector_prompts, *task.dev.zero, *task.dev.few, *task.test.zero]
        assert all(ids[0] == eot and eot not in ids[1:] for ids in prompts)
