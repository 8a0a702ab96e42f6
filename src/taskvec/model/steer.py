"""Steering: change block L's output along a vector at chosen tokens while a model runs.

`steer_hidden` is the arithmetic (`add` h + s*v, `ablate` h - (h.v/|v|^2) v + s*v, `replace`
h = v), computed in float32 and cast back. `steering_hooks` applies it in a plain Hugging Face
forward or `generate` loop: a pre-hook on the model sees each forward's inputs and marks the
steered tokens, a hook on block L changes its output there before block L+1 reads it (as
`intervene.patching` does). A forward on an empty cache is the prompt; a forward on a filled
cache is a decode step, and its tokens are generated tokens.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, get_args

import torch
from torch import nn

from taskvec.errors import TaskvecError
from taskvec.model.capture import block_output, decoder_blocks
from taskvec.model.kvcache import cache_kw, cached_tokens
from taskvec.positions import normalise_layer

Mode = Literal["add", "ablate", "replace"]
Where = Literal["last", "prompt", "generated", "all"]
MODES: tuple[str, ...] = get_args(Mode)
WHERES: tuple[str, ...] = get_args(Where)


def steer_hidden(h: torch.Tensor, v: torch.Tensor, mode: Mode, scale: float) -> torch.Tensor:
    """`h` (..., hidden) steered along `v` (hidden,), in h's dtype; `add` at scale 0 returns `h`."""
    if mode == "add" and scale == 0:
        return h
    hf, vf = h.float(), v.to(h.device, torch.float32)
    if mode == "add":
        out = hf + scale * vf
    elif mode == "ablate":
        along = (hf @ vf) / (vf @ vf)
        out = hf - along.unsqueeze(-1) * vf + scale * vf
    elif mode == "replace":
        out = vf.expand_as(hf)
    else:
        raise TaskvecError(f"mode: unknown steering mode {mode!r}; use one of {', '.join(MODES)}")
    return out.to(h.dtype)


def check_steering(
    vectors: Mapping[int, torch.Tensor],
    mode: str,
    scale: float,
    where: str,
    n_blocks: int,
    hidden: int | None = None,
) -> dict[int, torch.Tensor]:
    """The vectors by non-negative block index, once mode, scale, where, layers and (if given)
    the model's hidden size make sense."""
    if mode not in MODES:
        raise TaskvecError(f"mode: unknown steering mode {mode!r}; use one of {', '.join(MODES)}")
    if where not in WHERES:
        raise TaskvecError(f"where: unknown {where!r}; use one of {', '.join(WHERES)}")
    if not math.isfinite(scale):
        raise TaskvecError(f"scale: {scale} is not a finite number")
    if mode == "replace" and scale != 1.0:
        raise TaskvecError(
            f"scale: {scale} has no meaning for mode replace (h = v); use add or ablate"
        )
    if not vectors:
        raise TaskvecError("layers: no layer to steer; give at least one")
    out: dict[int, torch.Tensor] = {}
    for layer, vector in vectors.items():
        if hidden is not None and vector.shape != (hidden,):
            raise TaskvecError(
                f"layer {layer}: a vector of shape {tuple(vector.shape)} cannot steer a model of "
                f"hidden size {hidden}"
            )
        if mode == "ablate" and not bool(vector.float().norm() > 0):
            raise TaskvecError(
                f"mode ablate: the vector at layer {layer} is zero, it has no direction"
            )
        out[normalise_layer(int(layer), n_blocks)] = vector
    return out


def steered_tokens(
    shape: tuple[int, int],
    mask: torch.Tensor | None,
    prompt: bool,
    where: str,
    rows: Sequence[int] | None,
) -> torch.Tensor | None:
    """(batch, tokens) bool: which tokens of one forward are steered; None when none are.

    `mask` is the 2-D attention mask (its last `tokens` columns are this forward's tokens; 0 is
    padding, on either side). A prompt's last token is its last unmasked one.
    """
    batch, tokens = shape
    if (prompt and where == "generated") or (not prompt and where in ("last", "prompt")):
        return None
    if mask is not None and mask.dim() == 2:
        real = mask[:, -tokens:].bool()
    else:
        real = torch.ones(batch, tokens, dtype=torch.bool)
    steer = real
    if prompt and where == "last":
        index = torch.arange(tokens, device=real.device).expand(batch, tokens)
        last = torch.where(real, index, -1).amax(dim=1, keepdim=True)
        steer = index == last
    if rows is not None:
        if any(not 0 <= row < batch for row in rows):
            raise TaskvecError(f"rows: {list(rows)} reaches outside a batch of {batch}")
        keep = torch.zeros(batch, 1, dtype=torch.bool, device=steer.device)
        keep[list(rows)] = True
        steer = steer & keep
    return steer if bool(steer.any()) else None


@contextmanager
def steering_hooks(
    model: nn.Module,
    vectors: Mapping[int, torch.Tensor],
    mode: Mode = "add",
    scale: float = 1.0,
    where: Where = "last",
    rows: Sequence[int] | None = None,
) -> Iterator[None]:
    """While active, every forward of `model` (a causal LM or its decoder) is steered.

    `vectors[L]` (hidden,) changes block L's output at the tokens `where` names (`last`: each
    prompt's last token, later tokens see it through the cache only; `prompt`, `generated`,
    `all`), in every batch row or only `rows`. Padding on either side is found through the
    attention mask. Hooks are removed on every exit path.
    """
    blocks = decoder_blocks(model)  # type: ignore[arg-type]
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    by_block = check_steering(vectors, mode, scale, where, len(blocks), hidden)
    signature = inspect.signature(model.forward)
    cache_name = cache_kw(model)
    state: dict[str, torch.Tensor | None] = {"steer": None}

    def pre_hook(_module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        bound = signature.bind_partial(*args, **kwargs).arguments
        extra = bound.get("kwargs", {})
        inputs = _first(bound, extra, "input_ids", "inputs_embeds")
        cache = _first(bound, extra, cache_name, "past_key_values")
        shape = (int(inputs.shape[0]), int(inputs.shape[1]))
        mask = _first(bound, extra, "attention_mask")
        state["steer"] = steered_tokens(shape, mask, cached_tokens(cache) == 0, where, rows)

    def make_hook(vector: torch.Tensor) -> Callable[[nn.Module, tuple, Any], Any]:
        def hook(_module: nn.Module, _args: tuple, output: Any) -> Any:
            steer = state["steer"]
            if steer is None:
                return None
            h = block_output(output)
            steer = steer.to(h.device)
            out = h.clone()
            out[steer] = steer_hidden(h[steer], vector, mode, scale)
            return (out, *output[1:]) if isinstance(output, tuple) else out

        return hook

    handles = [model.register_forward_pre_hook(pre_hook, with_kwargs=True)]
    try:
        for layer, vector in by_block.items():
            handles.append(blocks[layer].register_forward_hook(make_hook(vector)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _first(bound: Mapping[str, Any], extra: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` given to the forward (by name or position), else None."""
    for name in names:
        value = bound.get(name, extra.get(name))
        if value is not None:
            return value
    return None
