"""Steering hooks on tiny models of both families: which tokens change, and batch == alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from taskvec.errors import TaskvecError
from taskvec.model.capture import block_output, decoder_blocks
from taskvec.model.steer import MODES, WHERES, steer_hidden, steering_hooks
from tests.tiny import make_model

PAD = 0
PROMPTS = [[5, 17, 33, 8, 91, 12, 40], [77, 3, 250], [19, 64, 7, 120, 5]]
LAYER = 1
NEW = 5


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def model(request: pytest.FixtureRequest) -> nn.Module:
    return make_model(request.param, n_layers=3)


def direction(model: nn.Module, seed: int = 1) -> torch.Tensor:
    """A fixed vector larger than a block output here, so steering changes the answers."""
    g = torch.Generator().manual_seed(seed)
    return 4.0 * torch.randn(model.config.hidden_size, generator=g)


def left_padded(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


@torch.inference_mode()
def generate(model: nn.Module, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy tokens (rows, NEW) and raw logits (rows, NEW, vocab) of a left-padded batch."""
    ids, mask = left_padded(prompts)
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=NEW,
        min_new_tokens=NEW,
        do_sample=False,
        pad_token_id=PAD,
        output_logits=True,
        return_dict_in_generate=True,
    )
    return out.sequences[:, ids.shape[1] :], torch.stack(out.logits, dim=1)


def hook_changes(
    model: nn.Module, where: str, mode: str = "add", scale: float = 2.0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Block LAYER's output just before and just after the steering hook, per forward of a
    generate call on PROMPTS."""
    block = decoder_blocks(model)[LAYER]
    before: list[torch.Tensor] = []
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    first = block.register_forward_hook(lambda _m, _a, o: before.append(block_output(o).clone()))
    try:
        with steering_hooks(model, {LAYER: direction(model)}, mode, scale, where):
            after = block.register_forward_hook(
                lambda _m, _a, o: seen.append((before[-1], block_output(o).clone()))
            )
            try:
                generate(model, PROMPTS)
            finally:
                after.remove()
    finally:
        first.remove()
    return seen


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", WHERES)
def test_steered_prompt_in_a_left_padded_batch_equals_it_alone(
    model: nn.Module, mode: str, where: str
) -> None:
    scale = 1.0 if mode == "replace" else 2.0
    with steering_hooks(model, {LAYER: direction(model)}, mode, scale, where):
        tokens, logits = generate(model, PROMPTS)
        alone = [generate(model, [p]) for p in PROMPTS]
    for row, (tok, log) in enumerate(alone):
        assert torch.equal(tokens[row], tok[0]), (row, tokens[row], tok[0])
        torch.testing.assert_close(logits[row], log[0], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(generate(model, PROMPTS)[1], logits, atol=1e-2), "nothing changed"


@pytest.mark.parametrize("where", WHERES)
def test_rows_left_out_run_as_if_unsteered(model: nn.Module, where: str) -> None:
    with steering_hooks(model, {LAYER: direction(model)}, "add", 2.0, where, rows=[1]):
        tokens, logits = generate(model, PROMPTS)
        with pytest.raises(TaskvecError, match="outside a batch of 1"):
            generate(model, [PROMPTS[0]])
    with steering_hooks(model, {LAYER: direction(model)}, "add", 2.0, where):
        steered = generate(model, [PROMPTS[1]])
    for row in (0, 2):
        tok, log = generate(model, [PROMPTS[row]])
        assert torch.equal(tokens[row], tok[0])
        torch.testing.assert_close(logits[row], log[0], atol=1e-4, rtol=1e-4)
    assert torch.equal(tokens[1], steered[0][0])
    torch.testing.assert_close(logits[1], steered[1][0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("where", WHERES)
def test_add_with_scale_zero_is_the_unsteered_run_bit_for_bit(model: nn.Module, where: str) -> None:
    plain_tokens, plain_logits = generate(model, PROMPTS)
    vectors = {LAYER: direction(model), 2: direction(model, 2)}
    with steering_hooks(model, vectors, "add", 0.0, where):
        tokens, logits = generate(model, PROMPTS)
    assert torch.equal(tokens, plain_tokens)
    assert torch.equal(logits, plain_logits)


@pytest.mark.parametrize("where", WHERES)
def test_where_names_exactly_the_tokens_the_hook_changes(model: nn.Module, where: str) -> None:
    ids, mask = left_padded(PROMPTS)
    forwards = hook_changes(model, where)
    assert len(forwards) == NEW  # the prefill, then one decode step per further token
    prefill = (forwards[0][0] != forwards[0][1]).any(dim=-1)
    expected = {
        "last": torch.zeros_like(prefill).index_fill(1, torch.tensor([ids.shape[1] - 1]), True),
        "prompt": mask.bool(),
        "generated": torch.zeros_like(prefill),
        "all": mask.bool(),
    }[where]
    assert torch.equal(prefill, expected)
    for before, after in forwards[1:]:
        assert before.shape[1] == 1
        changed = (before != after).any(dim=-1)
        assert bool(changed.all()) if where in ("generated", "all") else not bool(changed.any())


def test_ablate_leaves_the_steered_tokens_orthogonal_to_v(model: nn.Module) -> None:
    v = direction(model)
    for before, after in hook_changes(model, "all", "ablate", 0.0):
        cosine = (after @ v) / (after.norm(dim=-1) * v.norm())
        steered = (before != after).any(dim=-1)
        assert bool(steered.any())
        assert float(cosine[steered].abs().max()) < 1e-5
        assert float(((before @ v) / (before.norm(dim=-1) * v.norm()))[steered].abs().max()) > 0.05


def test_where_last_finds_each_rows_last_token_under_right_padding(model: nn.Module) -> None:
    """A plain forward with the padding on the right: the last unmasked token is steered."""
    width = max(map(len, PROMPTS))
    ids = torch.tensor([p + [PAD] * (width - len(p)) for p in PROMPTS])
    mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in PROMPTS])
    block = decoder_blocks(model)[LAYER]
    outputs: list[torch.Tensor] = []
    with torch.inference_mode():
        for steer in (False, True):
            handle = None
            try:
                if steer:
                    ctx = steering_hooks(model, {LAYER: direction(model)}, "add", 1.0, "last")
                    ctx.__enter__()
                handle = block.register_forward_hook(
                    lambda _m, _a, o: outputs.append(block_output(o).clone())
                )
                model(input_ids=ids, attention_mask=mask)
            finally:
                if handle is not None:
                    handle.remove()
                if steer:
                    ctx.__exit__(None, None, None)
    changed = (outputs[0] != outputs[1]).any(dim=-1)
    expected = torch.zeros_like(changed)
    for row, p in enumerate(PROMPTS):
        expected[row, len(p) - 1] = True
    assert torch.equal(changed, expected)


def test_hooks_are_removed_on_every_exit(model: nn.Module) -> None:
    blocks = decoder_blocks(model)
    with pytest.raises(RuntimeError, match="boom"):
        with steering_hooks(model, {LAYER: direction(model)}, "add", 1.0, "all"):
            assert model._forward_pre_hooks and blocks[LAYER]._forward_hooks
            raise RuntimeError("boom")
    assert not model._forward_pre_hooks
    assert not any(block._forward_hooks for block in blocks)


@pytest.mark.parametrize(
    ("vectors", "mode", "scale", "where", "message"),
    [
        ({1: torch.ones(64)}, "steer", 1.0, "last", "unknown steering mode"),
        ({1: torch.ones(64)}, "add", 1.0, "middle", "where: unknown"),
        ({1: torch.ones(64)}, "replace", 2.0, "last", "no meaning for mode replace"),
        ({1: torch.zeros(64)}, "ablate", 0.0, "last", "is zero"),
        ({1: torch.ones(32)}, "add", 1.0, "last", "hidden size 64"),
        ({7: torch.ones(64)}, "add", 1.0, "last", "out of range"),
        ({}, "add", 1.0, "last", "no layer"),
        ({1: torch.ones(64)}, "add", float("nan"), "last", "not a finite number"),
    ],
)
def test_bad_steering_is_refused_in_one_line(
    model: nn.Module, vectors: dict, mode: str, scale: float, where: str, message: str
) -> None:
    with pytest.raises(TaskvecError, match=message) as info:
        with steering_hooks(model, vectors, mode, scale, where):
            pass
    assert "\n" not in str(info.value)
    assert not model._forward_pre_hooks


def test_steer_hidden_arithmetic_in_float32() -> None:
    g = torch.Generator().manual_seed(0)
    h, v = torch.randn(3, 4, 16, generator=g), torch.randn(16, generator=g)
    assert steer_hidden(h, v, "add", 0.0) is h
    torch.testing.assert_close(steer_hidden(h, v, "add", 0.5), h + 0.5 * v)
    assert torch.equal(steer_hidden(h, v, "replace", 1.0), v.expand(3, 4, 16))
    ablated = steer_hidden(h, v, "ablate", 1.5)
    torch.testing.assert_close(ablated @ v, torch.full((3, 4), 1.5 * float(v @ v)))
    torch.testing.assert_close(ablated - 1.5 * v + (h @ v / (v @ v)).unsqueeze(-1) * v, h)
    low = h.to(torch.bfloat16)
    out = steer_hidden(low, v, "add", 0.3)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, (low.float() + 0.3 * v).to(torch.bfloat16))
