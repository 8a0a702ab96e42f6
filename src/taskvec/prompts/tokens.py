"""How an answer word starts in token ids, shared by patching's scoring and the logit lens."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def token_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def first_token_forms(tokenizer: PreTrainedTokenizerBase, word: str) -> list[int]:
    """The token ids an answer can start with: the first token of `word` and of `" " + word`, case as written.

    A token that is only whitespace (some vocabularies split " Paris" as " " + "Paris") is skipped.
    """
    forms = set()
    for ids in (token_ids(tokenizer, word), token_ids(tokenizer, " " + word)):
        first = next((t for t in ids if str(tokenizer.decode([t])).strip()), None)
        if first is not None:
            forms.add(first)
    return sorted(forms)
