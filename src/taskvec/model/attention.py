"""Shared-prefix attention, registered with transformers as the attention implementation `taskvec`.

Without a shared prefix it is transformers' own `sdpa` (same function, same masks). Given
`shared_prefix=` (per block, the keys and values of a prefix every row of the batch shares:
one row, `(1, kv_heads, P, head_dim)`), each query attends to that prefix, read once for the
whole batch, and to its own row's keys and values (the cache after the prefix), and the two
parts are merged by their softmax normalisers. The prefix is never copied per row, so
prompts that share few-shot demonstrations cost their suffixes only, in memory and reads.
Positions (rotary) are the caller's: position ids continue after the prefix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "taskvec"
# per block: keys, values of one row, (1, kv_heads, P, head_dim)
SharedPrefix = Sequence[tuple[torch.Tensor, torch.Tensor]]
# the flash kernel's additive own-key mask and which queries see no own key (`_kernel_mask`)
KernelMask = tuple[torch.Tensor, torch.Tensor]


def shared_prefix_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    shared_prefix: SharedPrefix | None = None,
    segments: Sequence[int] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention output `(rows, q, heads, head_dim)`: sdpa, or prefix + own keys merged when
    `shared_prefix` is given.

    `query` is `(rows, heads, q, head_dim)`, `key`/`value` `(rows, kv_heads, s, head_dim)` (the
    row's own tokens, the last `q` of them the queries), `attention_mask` transformers' boolean
    `(rows, 1, q, s)` mask over those `s` columns or None (causal). `segments` (packed input: one
    row holding several prompts' suffixes back to back, no cache) attends causally within each
    segment only, so the masked-out blocks are never computed.
    """
    if shared_prefix is None and segments is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    prefix = shared_prefix[int(module.layer_idx)] if shared_prefix is not None else None  # type: ignore[arg-type]
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if segments is not None:
        return _packed(query, key, value, segments, prefix, scale), None
    q, s = query.shape[2], key.shape[2]
    if query.device.type == "cpu":
        # no cache, no padding: the kernel's own causal mask
        causal = attention_mask is None and q == s
        group = query.shape[1] // key.shape[1]
        own = None if causal else _kernel_mask(attention_mask, q, s, group, query)
        return _fused_cpu(query, key, value, own, prefix, scale), None
    return _attend(
        query, key, value, _own_mask(attention_mask, q, s, query.device), prefix, scale
    ), None


def _attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    own_mask: torch.Tensor,
    prefix: tuple[torch.Tensor, torch.Tensor] | None,
    scale: float,
) -> torch.Tensor:
    """Softmax attention of each row's queries over the prefix (one copy, if any) and its own
    masked columns."""
    rows, heads, q, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    compute = torch.float32 if query.dtype in (torch.float16, torch.bfloat16) else query.dtype
    # queries grouped by their kv head: (rows, kv_heads, group * q, dim); head h uses kv head h // group
    grouped = query.reshape(rows, kv_heads, group * q, dim).to(compute)
    on_own = torch.matmul(grouped, key.to(compute).transpose(2, 3)).mul_(scale)
    own_mask = (
        own_mask[:, :, None]
        .expand(own_mask.shape[0], 1, group, q, key.shape[2])
        .reshape(own_mask.shape[0], 1, group * q, -1)
    )
    on_own.masked_fill_(~own_mask, float("-inf"))
    top = on_own.amax(-1, keepdim=True)
    if prefix is not None:  # the prefix, read once: a kv head's queries of every row are one matrix
        folded = grouped.transpose(0, 1).reshape(kv_heads, rows * group * q, dim)
        on_prefix = torch.matmul(folded, prefix[0][0].to(compute).transpose(1, 2)).mul_(scale)
        on_prefix = on_prefix.view(kv_heads, rows, group * q, -1).transpose(0, 1)
        top = torch.maximum(top, on_prefix.amax(-1, keepdim=True))
    weights = (on_own - top).exp_()
    total = weights.sum(-1, keepdim=True)
    out = torch.matmul(weights, value.to(compute))
    if prefix is not None:
        weights_prefix = (on_prefix - top).exp_()
        total = total + weights_prefix.sum(-1, keepdim=True)
        folded_weights = weights_prefix.transpose(0, 1).reshape(kv_heads, rows * group * q, -1)
        out = out + torch.matmul(folded_weights, prefix[1][0].to(compute)).view(
            kv_heads, rows, group * q, dim
        ).transpose(0, 1)
    out = (out / total).to(query.dtype).reshape(rows, heads, q, dim)
    return out.transpose(1, 2).contiguous()


# the last forward's mask and what `_kernel_mask` made of it (every block of a forward gets the
# same mask object, so it is built once a forward, not once a block)
_LAST_MASK: list[tuple[torch.Tensor, int, KernelMask]] = []


def _kernel_mask(
    mask: torch.Tensor | None, q: int, s: int, group: int, like: torch.Tensor
) -> KernelMask:
    """The kernel's additive mask over a kv head's `group * q` queries, `(rows or 1, 1, group * q,
    s)` in `like`'s dtype, and which queries see no own key, from transformers' mask (`_own_mask`)."""
    if _LAST_MASK:
        last, last_group, made = _LAST_MASK[0]
        if last is mask and last_group == group and made[0].dtype == like.dtype:
            return made
    tiled = _own_mask(mask, q, s, like.device).repeat(1, 1, group, 1)
    additive = torch.zeros(tiled.shape, dtype=like.dtype, device=like.device)
    made = (additive.masked_fill_(~tiled, float("-inf")), ~tiled.any(-1))
    _LAST_MASK[:] = [(mask, group, made)] if mask is not None else []
    return made


def _fused_cpu(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    own_mask: KernelMask | None,
    prefix: tuple[torch.Tensor, torch.Tensor] | None,
    scale: float,
) -> torch.Tensor:
    """`_attend` on the CPU from torch's fused flash kernel; `own_mask` (`_kernel_mask`) None means
    causal rows with no cache.

    The kernel returns each query's log-sum-exp, so the prefix part (a kv head's queries of every
    row as one sequence against the prefix's one copy) and the own part merge exactly as one softmax
    over both. With a mask, a kv head's group of query heads is one block of queries against its
    keys (never copied per head).
    """
    rows, heads, q, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    grouped = query.reshape(rows, kv_heads, group * q, dim)
    # the kernel gives 0 where a query sees no own key
    if own_mask is None:  # one query per head keeps the kernel's causal order
        own, own_lse = flash(
            query,
            key.repeat_interleave(group, 1),
            value.repeat_interleave(group, 1),
            is_causal=True,
            scale=scale,
        )
    else:
        additive, unseen = own_mask
        own, own_lse = flash(grouped, key, value, attn_mask=additive, scale=scale)
        own_lse = own_lse.masked_fill(unseen, float("-inf"))
    if prefix is None:
        return own.reshape(rows, heads, q, dim).transpose(1, 2).contiguous()
    own, own_lse = (
        own.reshape(rows, kv_heads, group * q, dim),
        own_lse.reshape(rows, kv_heads, group * q),
    )
    folded = grouped.transpose(0, 1).reshape(1, kv_heads, rows * group * q, dim)
    on_prefix, prefix_lse = flash(folded, prefix[0], prefix[1], scale=scale)
    on_prefix = on_prefix.reshape(kv_heads, rows, group * q, dim).transpose(0, 1)
    prefix_lse = prefix_lse.reshape(kv_heads, rows, group * q).transpose(0, 1)
    top = torch.maximum(own_lse, prefix_lse)
    w_own, w_prefix = (own_lse - top).exp_()[..., None], (prefix_lse - top).exp_()[..., None]
    out = (own.float() * w_own + on_prefix.float() * w_prefix) / (w_own + w_prefix)
    return out.to(query.dtype).reshape(rows, heads, q, dim).transpose(1, 2).contiguous()


def _packed(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    segments: Sequence[int],
    prefix: tuple[torch.Tensor, torch.Tensor] | None,
    scale: float,
) -> torch.Tensor:
    """One packed row `(1, heads, S, dim)` of back-to-back segments: each segment as its own row, causal."""
    device, longest = query.device, max(segments)
    starts = torch.tensor([0, *segments[:-1]], device=device).cumsum(0)
    lens = torch.tensor(list(segments), device=device)
    offsets = torch.arange(longest, device=device)
    valid = offsets[None] < lens[:, None]  # (segments, longest)
    index = (starts[:, None] + offsets[None]).clamp_(max=query.shape[2] - 1)
    # (segments, heads, longest, dim)
    q, k, v = (t[0][:, index].transpose(0, 1) for t in (query, key, value))
    if device.type == "cpu":  # segments right-padded: causal is enough
        return _fused_cpu(q, k, v, None, prefix, scale)[valid][None]
    own_mask = _own_mask(None, longest, longest, device) & valid[:, None, None, :]
    out = _attend(q, k, v, own_mask, prefix, scale)  # (segments, longest, heads, dim)
    return out[valid][None]


# an additive float mask is 0 where attended
def _own_mask(mask: torch.Tensor | None, q: int, s: int, device: torch.device) -> torch.Tensor:
    """Which own columns each query sees, boolean `(rows or 1, 1, q, s)`: the given mask, or causal."""
    if mask is None:
        return (
            torch.arange(s, device=device)[None] <= torch.arange(s - q, s, device=device)[:, None]
        )[None, None]
    return (mask if mask.dtype == torch.bool else mask == 0)[:, :1]


def register() -> str:
    """Register the implementation (and sdpa's mask builder for it) with transformers; returns its name."""
    AttentionInterface.register(NAME, shared_prefix_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def can_share_prefix(model: PreTrainedModel) -> bool:
    """Whether `model` runs, or `use_shared_prefix_attention` switches it to, this implementation:
    an `sdpa` or `taskvec` model (eager or flash ones cannot take `shared_prefix=`)."""
    return bool(model.config._attn_implementation in ("sdpa", NAME))


@contextmanager
def use_shared_prefix_attention(model: PreTrainedModel) -> Iterator[bool]:
    """Run `model` on this implementation inside the block (the one place taskvec switches a
    model's attention): an `sdpa` model is switched to it, the same computation without a shared
    prefix, and back on exit; other implementations are left alone. Yields whether it runs it."""
    switched = model.config._attn_implementation == "sdpa"
    if switched:
        model.set_attn_implementation(register())
    try:
        yield bool(model.config._attn_implementation == NAME)
    finally:
        _LAST_MASK.clear()  # the last forward's mask is not kept past the block
        if switched:
            model.set_attn_implementation("sdpa")
