"""Render a query and its demonstrations to the exact text the model reads."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from taskvec.data.base import Sample
from taskvec.errors import TaskvecError
from taskvec.prompts.config import PromptConfig
from taskvec.prompts.start import StartToken, resolve_start

Message = dict[str, str]


@dataclass(frozen=True)
class RenderedPrompt:
    """A query's prompt text plus how to tokenise it reproducibly."""

    sample_id: str
    text: str
    add_special_tokens: bool
    demo_ids: tuple[str, ...]


def user_text(cfg: PromptConfig, sample: Sample) -> str:
    """The user turn for one sample: optional context, then the question."""
    context = cfg.context_template.format(context=sample.context) if sample.context else ""
    return context + cfg.question_template.format(question=sample.question)


def answer_text(cfg: PromptConfig, sample: Sample) -> str:
    """A demonstration's answer: the rationale first for CoT, then the answer sentence."""
    final = cfg.answer_format.format(answer=sample.answer_text)
    if cfg.prompt_type == "cot" and sample.rationale:
        return f"{sample.rationale} {final}"
    return final


def build_messages(cfg: PromptConfig, query: Sample, demos: list[Sample]) -> list[Message]:
    """System turn (system prompt + instruction), demonstration pairs, then the query."""
    system = "\n\n".join(part for part in (cfg.system_prompt, cfg.instruction) if part)
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    for demo in demos:
        messages.append({"role": "user", "content": user_text(cfg, demo)})
        messages.append({"role": "assistant", "content": answer_text(cfg, demo)})
    messages.append({"role": "user", "content": user_text(cfg, query)})
    return messages


def messages_to_plain(messages: list[Message]) -> str:
    """Plain-text rendering for base models: blocks separated by blank lines, ending in 'Answer:'."""
    blocks: list[str] = []
    for msg in messages:
        if msg["role"] == "system":
            blocks.append(msg["content"])
        elif msg["role"] == "user":
            blocks.append(msg["content"])
        else:
            blocks[-1] += f"\nAnswer: {msg['content']}"
    blocks[-1] += "\nAnswer:"
    return "\n\n".join(blocks)


def start_token(cfg: PromptConfig, tokenizer: PreTrainedTokenizerBase) -> StartToken:
    """How `cfg`'s prompts begin with `tokenizer` (its `start_token` setting resolved)."""
    return resolve_start(cfg.start_token, cfg.use_chat_template, tokenizer)


def render_prompt(
    cfg: PromptConfig, query: Sample, demos: list[Sample], tokenizer: PreTrainedTokenizerBase
) -> RenderedPrompt:
    """The prompt text for `query`, start token included; chat-templated text already holds its
    special tokens, and only a plain prompt whose start token the tokenizer adds is tokenised
    with special tokens."""
    messages = build_messages(cfg, query, demos)
    ids = tuple(d.id for d in demos)
    start = start_token(cfg, tokenizer)
    if not cfg.use_chat_template:
        text = messages_to_plain(messages)
        return RenderedPrompt(query.id, start.prefix + text, start.added_by == "tokenizer", ids)
    if not getattr(tokenizer, "chat_template", None):
        raise TaskvecError(
            "use_chat_template: the tokenizer has no chat template; set `use_chat_template: false` "
            "in the prompt config or use an instruct model"
        )
    chat = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return RenderedPrompt(query.id, start.prefix + str(chat), False, ids)
