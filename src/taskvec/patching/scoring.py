"""Scoring one-word (text) answers of next-token runs: the greedy continuation, and a
label-restricted first token.

The rule (`AnswerScorer.rule`) generalises the paper's first-token scoring to answers of
several tokens: a prediction is correct when the model's greedy continuation spells the
whole answer at a token boundary, leading whitespace aside and case kept unless
`case_sensitive` is off ("T" then "ower" answers "T", as first-token scoring would;
" v" then "oiture" does not answer "vache"). Generation stops as soon as the text is
the answer or can no longer become it, and after as many tokens as the answer's longest
tokenisation. The answer is read however the tokenizer split it: " Paris" as one token
in plain text, "P"+"aris" without the leading space at the start of a chat turn.

For classification tasks (a few answer words whose first tokens differ) there is also
the restricted prediction of Hendel et al.: the answer word whose first token, in any of
its forms (with or without a leading space, the case as written), has the highest logit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from taskvec.prompts.tokens import first_token_forms, token_ids

MAX_RESTRICTED_LABELS = 10


class AnswerScorer:
    """Scores greedy continuations against gold answer words (see the module docstring)."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, golds: Sequence[str], case_sensitive: bool = True
    ) -> None:
        self.case_sensitive = case_sensitive
        words = sorted(set(golds))
        lengths = [len(token_ids(tokenizer, form)) for w in words for form in (w, " " + w)]
        self.max_new_tokens = max(lengths, default=1)
        self.single_token = all(
            min(len(token_ids(tokenizer, w)), len(token_ids(tokenizer, " " + w))) == 1
            for w in words
        )
        self.labels, self.watch, self._forms = self._restricted_labels(tokenizer, words)

    @property
    def rule(self) -> str:
        """How predictions are scored, in words (recorded in patching.json)."""
        case = "case-sensitive" if self.case_sensitive else "case-insensitive"
        return (
            f"greedy continuation (up to {self.max_new_tokens} tokens) spells the whole answer at "
            "a token boundary "
            f"({case}, leading whitespace ignored; first-token scoring for one-token answers)"
        )

    def _restricted_labels(
        self, tokenizer: PreTrainedTokenizerBase, words: list[str]
    ) -> tuple[list[str], list[int], list[list[int]]]:
        """The labels for restricted scoring, the token ids to watch, and each label's forms
        (positions in watch)."""
        forms = {w: first_token_forms(tokenizer, w) for w in words}
        all_ids = [t for f in forms.values() for t in f]
        # not a classification task, or first tokens collide: no restricted score
        if not words or len(words) > MAX_RESTRICTED_LABELS or len(all_ids) != len(set(all_ids)):
            return (
                [],
                [],
                [],
            )
        watch = sorted(set(all_ids))
        return words, watch, [[watch.index(t) for t in forms[w]] for w in words]

    def _norm(self, text: str) -> str:
        words = " ".join(text.split())
        return words if self.case_sensitive else words.casefold()

    def keep(self, gold: str, text: str) -> bool:
        """Whether to generate on: the continuation so far is a proper prefix of `gold`."""
        so_far, target = self._norm(text), self._norm(gold)
        return so_far != target and target.startswith(so_far)

    def correct(self, gold: str, text: str) -> bool:
        """Whether a continuation, generated until `keep` stopped it, spells `gold`."""
        return self._norm(text) == self._norm(gold)

    def prediction(self, text: str) -> str:
        """The continuation as reported (whitespace collapsed)."""
        return " ".join(text.split())

    def restricted(self, watched: torch.Tensor) -> str | None:
        """The label whose best first-token form scores highest in `watched` (logits at
        `self.watch`), or None."""
        if not self.labels:
            return None
        best = [float(watched[f].max()) for f in self._forms]
        return self.labels[max(range(len(best)), key=best.__getitem__)]
