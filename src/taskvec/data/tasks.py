"""The built-in one-word task suite, in the style of Hendel et al. (2023): letters, lists,
knowledge, translation, linguistic and finance tasks with text answers.

Each task maps an input (a word, a country, a ticker, a short list) to a one-word answer
(a few answers have two words, e.g. "New Delhi"). The question is the bare input, so a
zero-shot prompt does not say what the task is: only demonstrations (or a task vector)
can. Facts live in `words/*.tsv` (one row per line, `-` for "no single-word answer").
Splits are deterministic: the rows are shuffled with a seeded RNG and the first third
(at least 50 rows) is `test`, the rest `train`; inputs never repeat within a task.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from taskvec.data.base import Sample
from taskvec.data.rationales import past_tense_rationale
from taskvec.errors import TaskvecError

Pair = tuple[str, str]
MIN_TEST = 50


@cache
def table(name: str) -> tuple[tuple[str, ...], ...]:
    """The rows of `words/{name}.tsv`, tab-separated, without comment lines."""
    text = (resources.files("taskvec.data") / "words" / f"{name}.tsv").read_text(encoding="utf-8")
    return tuple(
        tuple(line.split("\t"))
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def column(name: str, source: int, target: int) -> list[Pair]:
    """(input, answer) pairs from two columns of a table, skipping rows whose answer is `-`."""
    return [
        (row[source], row[target])
        for row in table(name)
        if row[target] != "-" and row[source] != "-"
    ]


def both_ways(name: str) -> list[Pair]:
    """Each pair of a two-column table in both directions (each word appears once, so inputs stay unique)."""
    return [p for a, b in table(name) for p in ((a, b), (b, a))]


def _nouns() -> list[str]:
    return [row[0] for row in table("nouns")]


def _lists(pick: Callable[[list[str]], str]) -> list[Pair]:
    """200 lists of 3-5 distinct nouns (seeded) with `pick`'s item as the answer."""
    rng, nouns = random.Random("taskvec-lists"), _nouns()
    seen: set[str] = set()
    out: list[Pair] = []
    while len(out) < 200:
        items = rng.sample(nouns, rng.randint(3, 5))
        text = ", ".join(items)
        if text not in seen:
            seen.add(text)
            out.append((text, pick(items)))
    return out


@dataclass(frozen=True)
class WordTask:
    """One task: its family, what it asks, how its (input, answer) pairs are made and, for
    chain-of-thought prompts, how a pair's rationale is worded (`taskvec.data.rationales`)."""

    name: str
    category: str
    description: str
    pairs: Callable[[], list[Pair]]
    rationale: Callable[[str, str], str] | None = None


WORD_TASKS: dict[str, WordTask] = {
    t.name: t
    for t in (
        WordTask(
            "first_letter",
            "letters",
            "word -> its first letter in upper case (apple -> A)",
            lambda: [(w, w[0].upper()) for w in _nouns()],
        ),
        WordTask(
            "last_letter",
            "letters",
            "word -> its last letter (apple -> e)",
            lambda: [(w, w[-1]) for w in _nouns()],
        ),
        WordTask(
            "list_first",
            "lists",
            "list of words -> the first one",
            lambda: _lists(lambda items: items[0]),
        ),
        WordTask(
            "list_last",
            "lists",
            "list of words -> the last one",
            lambda: _lists(lambda items: items[-1]),
        ),
        WordTask(
            "capital",
            "knowledge",
            "country -> its capital (France -> Paris)",
            lambda: column("countries", 0, 1),
        ),
        WordTask(
            "currency",
            "knowledge",
            "country -> its currency (Japan -> yen)",
            lambda: column("countries", 0, 2),
        ),
        WordTask(
            "en_fr",
            "translation",
            "English noun -> French (dog -> chien)",
            lambda: column("nouns", 0, 1),
        ),
        WordTask(
            "en_es",
            "translation",
            "English noun -> Spanish (dog -> perro)",
            lambda: column("nouns", 0, 2),
        ),
        WordTask(
            "antonym",
            "linguistic",
            "word -> its opposite (hot -> cold)",
            lambda: both_ways("antonyms"),
        ),
        WordTask(
            "plural",
            "linguistic",
            "noun -> its plural (child -> children)",
            lambda: column("nouns", 0, 3),
        ),
        WordTask(
            "past_tense",
            "linguistic",
            "verb -> its past tense (go -> went)",
            lambda: column("verbs", 0, 1),
            past_tense_rationale,
        ),
        WordTask(
            "uppercase",
            "linguistic",
            "word -> the word in upper case (apple -> APPLE)",
            lambda: [(w, w.upper()) for w in _nouns()],
        ),
        WordTask(
            "fin_antonym",
            "finance",
            "financial term -> its opposite (profit -> loss, bull -> bear)",
            lambda: both_ways("finance_antonyms"),
        ),
        WordTask(
            "ticker",
            "finance",
            "stock ticker -> company (AAPL -> Apple)",
            lambda: column("tickers", 0, 1),
        ),
        WordTask(
            "currency_code",
            "finance",
            "ISO currency code -> currency (JPY -> yen)",
            lambda: column("currency_codes", 0, 1),
        ),
    )
}


def task_rows(name: str, split: str, seed: int = 0) -> list[Pair]:
    """The (input, answer) pairs of `split` of word task `name`, in seeded order (see the module
    docstring)."""
    if name not in WORD_TASKS:
        raise TaskvecError(f"word task '{name}' is unknown; use one of: {', '.join(WORD_TASKS)}")
    pairs = WORD_TASKS[name].pairs()
    random.Random(f"{name}:{seed}").shuffle(pairs)
    n_test = max(MIN_TEST, len(pairs) // 3)
    return pairs[:n_test] if split == "test" else pairs[n_test:]


def word_split(name: str, split: str, n: int, seed: int = 0) -> list[Sample]:
    """The first `n` samples of `split` of word task `name`: the input as the question, the answer as text,
    and the task's rationale where it has one (tasks without one cannot make cot demonstrations)."""
    if split not in ("train", "test"):
        raise TaskvecError(f"builtin dataset has no split '{split}'; use one of: train, test")
    rows = task_rows(name, split, seed)[:n]
    rationale = WORD_TASKS[name].rationale
    return [
        Sample(
            id=f"{split}_{i}",
            question=x,
            answer=None,
            answer_text=y,
            rationale=rationale(x, y) if rationale else "",
        )
        for i, (x, y) in enumerate(rows)
    ]
