"""The start token: the one token every prompt begins with.

Models trained on documents that begin with a separator token (SmolLM2, Qwen2.5: `<|endoftext|>`)
use the first position as an attention sink, and their tokenizers add no start token, so a plain
prompt's first token would be its first word; a zero-shot prompt patched with a task vector then
collapses (docs/patching.md). `start_token` in a prompt config: `auto` (default) uses the
tokenizer's own start token where it adds one, else `<|endoftext|>` (else the tokenizer's
`bos_token`) for plain prompts, and nothing for chat prompts, whose template begins with its own
token; `off` adds none; any other value is the token to put first.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from taskvec.errors import TaskvecError

AUTO = "auto"
OFF = "off"
DOCUMENT_START = "<|endoftext|>"
PROBE = "a"


@dataclass(frozen=True)
class StartToken:
    """How a prompt config's prompts begin with this tokenizer."""

    setting: str  # as configured: auto, off or a token
    token: str | None  # the token the prompts begin with, where one is known
    added_by: str  # "prompt": written in front of the text; "tokenizer", "chat template", "none"

    def record(self) -> dict[str, str | None]:
        """The JSON form written to session metadata and evaluation metrics."""
        return {"setting": self.setting, "token": self.token, "added_by": self.added_by}

    @property
    def prefix(self) -> str:
        """The text written in front of the rendered prompt."""
        return (self.token or "") if self.added_by == "prompt" else ""


def tokenizer_start(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The token the tokenizer puts in front of a text by itself (a BOS), or None."""
    plain = list(tokenizer(PROBE, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(PROBE)["input_ids"])
    if len(full) > len(plain) and full[-len(plain) :] == plain and full[0] != plain[0]:
        return str(tokenizer.convert_ids_to_tokens(full[0]))
    return None


def one_token(tokenizer: PreTrainedTokenizerBase, token: str) -> bool:
    """Whether `token`, written in a text, encodes to exactly one token."""
    return len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1


def resolve_start(setting: str, chat: bool, tokenizer: PreTrainedTokenizerBase) -> StartToken:
    """What `start_token: setting` means for a chat or plain prompt with `tokenizer`."""
    if setting == OFF:
        return StartToken(setting, None, "none")
    if setting != AUTO:
        if not one_token(tokenizer, setting):
            raise TaskvecError(
                f"start_token: {setting!r} is not one token of this tokenizer; use a special token "
                f"such as {DOCUMENT_START}, `auto` or `off`"
            )
        return StartToken(setting, setting, "prompt")
    if chat:
        return StartToken(setting, None, "chat template")
    own = tokenizer_start(tokenizer)
    if own is not None:
        return StartToken(setting, own, "tokenizer")
    for candidate in (DOCUMENT_START, tokenizer.bos_token):
        if isinstance(candidate, str) and candidate in tokenizer.get_vocab():
            if one_token(tokenizer, candidate):
                return StartToken(setting, candidate, "prompt")
    return StartToken(setting, None, "none")
