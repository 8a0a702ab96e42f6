"""Golden prompt renderings, and demonstrations never include the query."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskvec.data.base import Sample
from taskvec.errors import TaskvecError
from taskvec.prompts.config import Demonstrations, load_prompt_config
from taskvec.prompts.fewshot import select_demonstrations
from taskvec.prompts.render import render_prompt
from tests.tiny import make_tokenizer

GOLDEN = Path(__file__).parent / "golden"
CONFIGS = Path(__file__).parents[1] / "configs" / "smollm2-135m"
POOL = [
    Sample(
        f"train_{i}",
        f"Revenue rose from {100 + i} to {120 + i} million. What is the percentage change?",
        round(20 / (100 + i) * 100, 2),
        f"{round(20 / (100 + i) * 100, 2)}",
        f"The change is {120 + i} - {100 + i} = 20, and 20 / {100 + i} = {round(20 / (100 + i) * 100, 2)}%.",
    )
    for i in range(7)
]
QUERY = Sample(
    "test_0",
    "A bond pays 5% on 1,000 for 2 years. What is the simple interest?",
    100.0,
    "100",
    "Interest = 1,000 * 0.05 * 2 = 100.",
    "Context line.",
)


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "plain"])
@pytest.mark.parametrize("name", ["vanilla_0shot", "vanilla_5shot", "cot_0shot", "cot_5shot"])
def test_golden(name: str, chat: bool) -> None:
    cfg = load_prompt_config(CONFIGS / f"{name}_answer.yaml").model_copy(
        update={"use_chat_template": chat}
    )
    demos = select_demonstrations(POOL, QUERY, cfg.n_shot, cfg.demonstrations)
    text = render_prompt(cfg, QUERY, demos, make_tokenizer()).text
    golden = GOLDEN / f"{name}_{'chat' if chat else 'plain'}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize(
    "selection,per_sample", [("first", False), ("random", False), ("random", True)]
)
def test_query_never_among_its_demonstrations(selection: str, per_sample: bool) -> None:
    spec = Demonstrations(selection=selection, per_sample=per_sample, seed=3)  # type: ignore[arg-type]
    for query in POOL:
        demos = select_demonstrations(POOL, query, 5, spec)
        assert len(demos) == 5 and query.id not in {d.id for d in demos}
        assert len({d.id for d in demos}) == 5


def test_first_k_is_shared_by_queries_outside_it() -> None:
    spec = Demonstrations()
    assert [d.id for d in select_demonstrations(POOL, QUERY, 3, spec)] == [
        "train_0",
        "train_1",
        "train_2",
    ]
    assert [d.id for d in select_demonstrations(POOL, POOL[1], 3, spec)] == [
        "train_0",
        "train_2",
        "train_3",
    ]


def test_too_many_shots_and_missing_template() -> None:
    with pytest.raises(TaskvecError, match="n_shot=7.*only 6"):
        select_demonstrations(POOL, POOL[0], 7, Demonstrations())
    cfg = load_prompt_config(CONFIGS / "vanilla_0shot_answer.yaml")
    with pytest.raises(TaskvecError, match="use_chat_template"):
        render_prompt(cfg, QUERY, [], make_tokenizer(chat_template=False))
