"""Scoring one-word (text) answers of next-token runs: whole greedy continuation, and a label-restricted first token.

The rule (`AnswerScorer.rule`): a prediction is the model's greedy continuation, long
enough to spell the longest answer in any tokenisation plus one token (so "Paris" then
"ian" is not "Paris"); it is correct when its first words equal the gold answer after
`answers.normalise_text` (case kept unless `case_sensitive` is off). An answer is read
however the tokenizer split it: " Paris" as one token in plain text, "P"+"aris" without
the leading space at the start of a chat turn.

For classification tasks (a few answer words whose first tokens differ) there is also
the restricted prediction of Hendel et al.: the answer word whose first token, in any of
its forms (with or without a leading space, the case as written), has the highest logit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from taskvec.answers import normalise_text, score_text

MAX_RESTRICTED_LABELS = 10


def token_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def first_token_forms(tokenizer: PreTrainedTokenizerBase, word: str) -> list[int]:
    """The token ids an answer can start with: the first token of `word` and of `" " + word`, case as written."""
    return sorted({ids[0] for ids in (token_ids(tokenizer, word), token_ids(tokenizer, " " + word)) if ids})


class AnswerScorer:
    """Scores greedy continuations against gold answer words (see the module docstring)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, golds: Sequence[str], case_sensitive: bool = True) -> None:
        self.case_sensitive = case_sensitive
        words = sorted(set(golds))
        lengths = [len(token_ids(tokenizer, form)) for w in words for form in (w, " " + w)]
        self.max_new_tokens = max(lengths, default=1) + 1
        self.single_token = all(min(len(token_ids(tokenizer, w)), len(token_ids(tokenizer, " " + w))) == 1 for w in words)
        self.labels, self.watch, self._forms = self._restricted_labels(tokenizer, words)

    @property
    def rule(self) -> str:
        """How predictions are scored, in words (recorded in patching.json)."""
        case = "case-sensitive" if self.case_sensitive else "case-insensitive"
        return (f"greedy continuation of up to {self.max_new_tokens} tokens, first words equal to the answer "
                f"({case}, edge punctuation stripped)")

    def _restricted_labels(self, tokenizer: PreTrainedTokenizerBase, words: list[str]) -> tuple[list[str], list[int], list[list[int]]]:
        """The labels for restricted scoring, the token ids to watch, and each label's forms (positions in watch)."""
        forms = {w: first_token_forms(tokenizer, w) for w in words}
        all_ids = [t for f in forms.values() for t in f]
        if not words or len(words) > MAX_RESTRICTED_LABELS or len(all_ids) != len(set(all_ids)):
            return [], [], []  # not a classification task, or first tokens collide: no restricted score
        watch = sorted(set(all_ids))
        return words, watch, [[watch.index(t) for t in forms[w]] for w in words]

    def _norm(self, text: str) -> str:
        return normalise_text(text, self.case_sensitive)

    def keep(self, gold: str, text: str) -> bool:
        """Whether a continuation that reads `text` so far can still turn out to be `gold`: keep generating."""
        so_far = " ".join(text.split()) if self.case_sensitive else " ".join(text.split()).casefold()
        target = gold if self.case_sensitive else gold.casefold()
        return target.startswith(so_far)

    def correct(self, gold: str, text: str) -> bool:
        """Whether a greedy continuation `text` answers `gold`."""
        return score_text(text, gold, self.case_sensitive)[1]

    def prediction(self, gold: str, text: str) -> str:
        """The part of `text` that was scored (its first words), for reports."""
        return " ".join(text.split()[: max(1, len(gold.split()))])

    def restricted(self, watched: torch.Tensor) -> str | None:
        """The label whose best first-token form scores highest in `watched` (logits at `self.watch`), or None."""
        if not self.labels:
            return None
        best = [float(watched[f].max()) for f in self._forms]
        return self.labels[max(range(len(best)), key=best.__getitem__)]
