"""Tiny random models and a locally built tokenizer, so unit tests need no download."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Question: What is the percentage change in revenue from 120 to 150 million? Answer: The answer is 25.",
    "Let's think step by step. Revenue grew from 1,200 to 1,500, so the change is 300 / 1,200 = 25%.",
    "Compute the gross margin, net income, ratio, interest, growth rate and earnings per share of "
    "the company.",
    "You are a careful financial analyst. Answer with a number. 0 1 2 3 4 5 6 7 8 9 . , % $ ( ) - + = / *",
]


def make_tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer trained on a few finance sentences."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token="<|im_start|>",
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model(
    family: str = "qwen2", n_layers: int = 4, vocab: int = 400, seed: int = 0
) -> torch.nn.Module:
    """A random-weight Qwen2 or Llama causal LM with a few blocks, in float32 and eval mode."""
    torch.manual_seed(seed)
    common = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    if family == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, attn_implementation="sdpa"))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common, attn_implementation="sdpa"))
    return model.float().eval()


def save_tiny(
    path: Path, family: str = "qwen2", n_layers: int = 4, chat_template: bool = True
) -> Path:
    """Write a tiny model and tokenizer as a local model directory."""
    make_model(family, n_layers).save_pretrained(path)
    make_tokenizer(chat_template).save_pretrained(path)
    return path


def script_model(model: torch.nn.Module, tokens: list[int]) -> torch.nn.Module:
    """Rewire a tiny model so that, fed `tokens[0]`, greedy decoding writes `tokens[1:]` and then
    token 0 for ever.

    The blocks write nothing (output projections zeroed), each scripted token's embedding is
    its own unit direction, and the LM head maps that direction to the token's successor.
    """
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert len(set(tokens)) == len(tokens) < embed.shape[1], (
        "a script needs distinct tokens, fewer than the hidden size"
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                param.zero_()
        embed.zero_()
        head.zero_()
        for i, (token, successor) in enumerate(zip(tokens, tokens[1:])):
            embed[token, i] = 1.0
            head[successor, i] = 10.0
    return model
