"""Interventions on the residual stream: hooks that overwrite or add to a block's output at one token,
and the forwards the patching protocol needs (a prompt's cached prefix, then only its last token)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from transformers import PreTrainedModel

from taskvec.model.capture import block_output, decoder_blocks
from taskvec.model.engine import Extractor
from taskvec.model.kvcache import KV, cache_kw, from_cache, to_cache
from taskvec.prompts.item import Item


@contextmanager
def patching(
    blocks: nn.ModuleList,
    patches: Mapping[int, tuple[Sequence[int], torch.Tensor]],
    position: int = -1,
    mode: str = "replace",
    scale: float = 1.0,
) -> Iterator[None]:
    """While active, block L's output at token `position` of batch rows `rows` becomes `vector` (or
    += scale*vector).

    `patches[L] = (rows, vector)`; `vector` is (hidden,). Every forward inside the block is
    patched, so run exactly one (the prefill). Hooks are removed on every exit path.
    """

    def make_hook(
        rows: Sequence[int], vector: torch.Tensor
    ) -> Callable[[nn.Module, tuple, torch.Tensor | tuple], torch.Tensor | tuple]:
        index = torch.as_tensor(list(rows), dtype=torch.long)

        def hook(
            _module: nn.Module, _args: tuple, output: torch.Tensor | tuple
        ) -> torch.Tensor | tuple:
            hidden = block_output(output).clone()
            vec = vector.to(hidden.device, hidden.dtype)
            rows_ = index.to(hidden.device)
            if mode == "replace":
                hidden[rows_, position] = vec
            else:
                hidden[rows_, position] += scale * vec
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    handles = []
    try:
        for layer, (rows, vector) in patches.items():
            handles.append(blocks[layer].register_forward_hook(make_hook(rows, vector)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def prefix_cache(model: PreTrainedModel, ids: Sequence[int]) -> KV:
    """The KV cache of `ids[:-1]` (every block), to run the last token on top of it."""
    device = next(model.parameters()).device
    cache = to_cache(None)
    base = model.get_decoder()
    base(
        input_ids=torch.tensor([list(ids[:-1])], device=device),
        use_cache=True,
        **{cache_kw(base): cache},
    )
    return from_cache(cache)


@torch.inference_mode()
def last_token_logits(
    model: PreTrainedModel,
    ids: Sequence[int],
    kv: KV,
    vectors: dict[int, torch.Tensor] | None,
    layers: Sequence[int],
    mode: str = "replace",
    scale: float = 1.0,
) -> torch.Tensor:
    """Next-token logits after `ids`, (1 + len(layers), vocab): row 0 unpatched, row 1+i patched at
    `layers[i]`.

    Only the last token runs (on the cached prefix, expanded over the rows), so one
    call costs one token per row.
    """
    device = next(model.parameters()).device
    rows = 1 + len(layers)
    cache = to_cache(kv, rows)
    n = len(ids)
    patches = (
        {layer: ([1 + i], vectors[layer]) for i, layer in enumerate(layers)}
        if vectors is not None
        else {}
    )
    with patching(decoder_blocks(model), patches, -1, mode, scale):
        out = model(
            input_ids=torch.full((rows, 1), int(ids[-1]), device=device),
            position_ids=torch.full((rows, 1), n - 1, device=device),
            use_cache=True,
            **{cache_kw(model): cache},
        )
    return out.logits[:, -1].float()


@torch.inference_mode()
def full_logits(model: PreTrainedModel, ids: Sequence[int]) -> torch.Tensor:
    """Next-token logits after `ids` from one plain forward, (vocab,)."""
    device = next(model.parameters()).device
    return (
        model(input_ids=torch.tensor([list(ids)], device=device), logits_to_keep=1)
        .logits[0, -1]
        .float()
    )


def mean_last_token_vectors(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    layers: list[int],
    batch_size: int = 8,
    max_batch_tokens: int = 4096,
) -> dict[int, torch.Tensor]:
    """Mean over prompts of block L's output at each prompt's last token (float32, CPU), per layer."""
    extractor = Extractor(
        model, sorted(layers), max_batch_tokens=max_batch_tokens, batch_size=batch_size
    )
    items = [Item(i, list(ids), [len(ids) - 1]) for i, ids in enumerate(prompts)]
    total = torch.zeros(len(layers), extractor.hidden, dtype=torch.float64)
    for result in extractor.run(items):
        total += result.vectors[:, :, 0].double().sum(0)
    mean = (total / len(items)).float()
    return {layer: mean[j] for j, layer in enumerate(sorted(layers))}
