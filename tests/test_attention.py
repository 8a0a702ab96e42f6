"""Shared-prefix attention equals sdpa over the prefix and the row's own tokens, concatenated."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import DynamicCache

from taskvec.model.attention import NAME, shared_prefix_attention, use_shared_prefix_attention
from taskvec.model.kvcache import from_cache
from tests.tiny import make_model


def reference(
    query: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor],
    key: torch.Tensor,
    value: torch.Tensor,
    own: torch.Tensor,
) -> torch.Tensor:
    """Plain sdpa with the prefix copied into every row and heads repeated: `(rows, q, heads, dim)`."""
    rows, heads = query.shape[:2]
    group = heads // key.shape[1]
    k = torch.cat([prefix[0].expand(rows, -1, -1, -1), key], dim=2).repeat_interleave(group, dim=1)
    v = torch.cat([prefix[1].expand(rows, -1, -1, -1), value], dim=2).repeat_interleave(
        group, dim=1
    )
    mask = torch.cat([own.new_ones(*own.shape[:3], prefix[0].shape[2]), own], dim=3)
    return torch.nn.functional.scaled_dot_product_attention(query, k, v, attn_mask=mask).transpose(
        1, 2
    )


@pytest.mark.parametrize("seed", range(6))
def test_matches_sdpa_on_the_concatenation(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    rows, kv_heads, group, dim = 1 + seed % 3, 1 + seed % 2, [1, 2, 3][seed % 3], 8
    q, own, prefix_len = [1, 5, 7][seed % 3], 9, 3 + 4 * seed
    module = SimpleNamespace(layer_idx=1)
    query = torch.randn(rows, kv_heads * group, q, dim, generator=g) * 3
    key, value = (torch.randn(rows, kv_heads, own, dim, generator=g) for _ in range(2))
    prefix = (
        torch.randn(1, kv_heads, prefix_len, dim, generator=g),
        torch.randn(1, kv_heads, prefix_len, dim, generator=g),
    )
    causal = torch.arange(own)[None] <= torch.arange(own - q, own)[:, None]
    # some own columns are padding, per row
    padding = torch.rand(rows, 1, 1, own, generator=g) > 0.3
    mask = (causal[None, None] & padding).expand(rows, 1, q, own)
    shared = [(torch.zeros(0), torch.zeros(0)), prefix]  # block 1's prefix; block 0's is never read
    got, _ = shared_prefix_attention(module, query, key, value, mask, shared_prefix=shared)  # type: ignore[arg-type]
    torch.testing.assert_close(
        got, reference(query, prefix, key, value, mask), rtol=1e-5, atol=1e-6
    )
    float_mask = torch.zeros(mask.shape).masked_fill_(~mask, torch.finfo(torch.float32).min)
    got_float, _ = shared_prefix_attention(
        module, query, key, value, float_mask, shared_prefix=shared
    )  # type: ignore[arg-type]
    torch.testing.assert_close(got_float, got)
    got_causal, _ = shared_prefix_attention(module, query, key, value, None, shared_prefix=shared)  # type: ignore[arg-type]
    want = reference(query, prefix, key, value, causal[None, None].expand(rows, 1, q, own))
    torch.testing.assert_close(got_causal, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("group", [1, 3])
@pytest.mark.parametrize("segments", [None, [4, 9, 1]])
def test_fused_cpu_path_for_causal_rows_and_packed_segments(
    group: int, segments: list[int] | None
) -> None:
    """No cache and no mask (extraction's suffix batches): torch's flash kernel, merged by log-sum-exp."""
    g = torch.Generator().manual_seed(group)
    rows, kv_heads, dim, prefix_len, own = 2, 2, 8, 11, 6
    module = SimpleNamespace(layer_idx=0)
    prefix = (
        torch.randn(1, kv_heads, prefix_len, dim, generator=g),
        torch.randn(1, kv_heads, prefix_len, dim, generator=g),
    )
    if segments is None:
        query = torch.randn(rows, kv_heads * group, own, dim, generator=g) * 3
        key, value = (torch.randn(rows, kv_heads, own, dim, generator=g) for _ in range(2))
        got, _ = shared_prefix_attention(module, query, key, value, None, shared_prefix=[prefix])  # type: ignore[arg-type]
        causal = torch.arange(own)[None] <= torch.arange(own)[:, None]
        torch.testing.assert_close(
            got, reference(query, prefix, key, value, causal[None, None].expand(rows, 1, own, own))
        )
        return
    total = sum(segments)
    query = torch.randn(1, kv_heads * group, total, dim, generator=g) * 3
    key, value = (torch.randn(1, kv_heads, total, dim, generator=g) for _ in range(2))
    got, _ = shared_prefix_attention(
        module, query, key, value, None, shared_prefix=[prefix], segments=segments
    )  # type: ignore[arg-type]
    seg = torch.repeat_interleave(torch.arange(len(segments)), torch.tensor(segments))
    pos = torch.arange(total)
    block_causal = (seg[:, None] == seg[None, :]) & (pos[None, :] <= pos[:, None])
    torch.testing.assert_close(got, reference(query, prefix, key, value, block_causal[None, None]))


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_model_forward_on_a_shared_prefix_equals_the_full_forward(family: str) -> None:
    """Left-padded suffixes of different lengths on one prefix, then a decode step, against full sequences."""
    model = make_model(family, n_layers=3)
    with use_shared_prefix_attention(model) as switched:
        assert switched and model.config._attn_implementation == NAME
        g = torch.Generator().manual_seed(0)
        prefix = torch.randint(3, 400, (30,), generator=g)
        suffixes = [torch.randint(3, 400, (n,), generator=g) for n in (5, 9, 3)]
        with torch.inference_mode():
            cache = DynamicCache()
            model(input_ids=prefix[None], cache=cache, use_cache=True)
            shared, width = from_cache(cache), 9
            ids, mask, pos = (torch.zeros(3, width, dtype=torch.long) for _ in range(3))
            for r, s in enumerate(suffixes):
                ids[r, width - len(s) :], mask[r, width - len(s) :] = s, 1
                pos[r, width - len(s) :] = torch.arange(30, 30 + len(s))
            own = DynamicCache()
            out = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                cache=own,
                use_cache=True,
                shared_prefix=shared,
            )
            step = model(
                input_ids=torch.tensor([[5], [6], [7]]),
                attention_mask=torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], 1),
                position_ids=torch.tensor([[30 + len(s)] for s in suffixes]),
                cache=own,
                use_cache=True,
                shared_prefix=shared,
            )
            for r, s in enumerate(suffixes):
                full = model(input_ids=torch.cat([prefix, s, torch.tensor([5 + r])])[None]).logits[
                    0, 30:
                ]
                torch.testing.assert_close(
                    out.logits[r, width - len(s) :], full[:-1], rtol=1e-4, atol=1e-5
                )
                torch.testing.assert_close(step.logits[r, -1], full[-1], rtol=1e-4, atol=1e-5)
    assert model.config._attn_implementation == "sdpa"  # switched back on exit


def test_other_implementations_are_left_alone() -> None:
    model = make_model("llama", n_layers=2)
    model.set_attn_implementation("eager")
    with use_shared_prefix_attention(model) as switched:
        assert not switched
        assert model.config._attn_implementation == "eager"
