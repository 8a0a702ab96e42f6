"""Batched, prefix-sharing, row-patched greedy runs equal one prompt at a time with full forwards."""

from __future__ import annotations

import pytest
import torch

from taskvec.model.batched import GreedyRunner, RunSpec
from taskvec.model.capture import decoder_blocks
from taskvec.model.intervene import full_logits, last_token_logits, patching, prefix_cache
from tests.tiny import make_model, make_tokenizer

N_LAYERS = 4
TEXTS = [
    "You are a careful financial analyst.\n\nRevenue 120, costs 150. Result:\nAnswer:",
    "You are a careful financial analyst.\n\nRevenue 1,200 to 1,500, so the change is 300 / 1,200 "
    "= 25%. Result:\nAnswer:",
    "You are a careful financial analyst.\n\nCompute the gross margin:\nAnswer:",
    "Question: ratio?\nAnswer:",
]


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def model(request: pytest.FixtureRequest) -> torch.nn.Module:
    """A tiny random model with a sharpened head, so greedy argmaxes are not near-ties."""
    m = make_model(request.param, N_LAYERS)
    with torch.no_grad():
        m.get_output_embeddings().weight.mul_(40.0)
    return m


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    tok = make_tokenizer()
    return [tok(t)["input_ids"] for t in TEXTS]


def greedy_reference(
    model: torch.nn.Module, ids: list[int], n: int, layer: int | None, vector: torch.Tensor | None
) -> list[int]:
    """Greedy tokens from full forwards, the prompt's last token patched at `layer` in every one
    (if given)."""
    out, seq = [], list(ids)
    patches = {layer: ([0], vector)} if layer is not None else {}
    with patching(decoder_blocks(model), patches, position=len(ids) - 1):
        for _ in range(n):
            out.append(int(full_logits(model, seq).argmax()))
            seq.append(out[-1])
    return out


@pytest.mark.parametrize("batch_size", [1, 3])
def test_rows_equal_single_prompt_patched_logits_and_greedy_tokens(
    model: torch.nn.Module, prompts: list[list[int]], batch_size: int
) -> None:
    tok = make_tokenizer()
    torch.manual_seed(0)
    vectors = {layer: torch.randn(64) * 3 for layer in range(N_LAYERS)}
    layers = [0, 2, 3]
    watch = list(range(50))
    runner = GreedyRunner(model, tok, batch_size=batch_size)
    got = runner.run(
        prompts, RunSpec(layers, vectors, max_new_tokens=3, watch=watch), lambda i, text: True
    )
    for i, ids in enumerate(prompts):
        expected = last_token_logits(model, ids, prefix_cache(model, ids), vectors, layers)
        assert len(got[i]) == 1 + len(layers)
        for row in range(1 + len(layers)):
            torch.testing.assert_close(got[i][row].watched, expected[row, watch], rtol=0, atol=1e-4)
            layer = None if row == 0 else layers[row - 1]
            tokens = greedy_reference(
                model, ids, 3, layer, vectors[layer] if layer is not None else None
            )
            assert got[i][row].text == tok.decode(tokens, skip_special_tokens=True)


def test_keep_stops_rows_early(model: torch.nn.Module, prompts: list[list[int]]) -> None:
    tok = make_tokenizer()
    runner = GreedyRunner(model, tok, batch_size=4)
    full = runner.run(prompts, RunSpec(max_new_tokens=4), lambda i, text: True)
    first = runner.run(prompts, RunSpec(max_new_tokens=4), lambda i, text: False)
    only_second = runner.run(prompts, RunSpec(max_new_tokens=4), lambda i, text: i == 1)
    for i in range(len(prompts)):
        reference = greedy_reference(model, prompts[i], 4, None, None)
        assert full[i][0].text == tok.decode(reference, skip_special_tokens=True)
        assert first[i][0].text == tok.decode(reference[:1], skip_special_tokens=True)
        assert only_second[i][0].text == (full[i][0].text if i == 1 else first[i][0].text)
