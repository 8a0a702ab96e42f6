"""Batched greedy continuations on shared prefixes, each prompt optionally run as several patched rows.

Prompts are grouped by the prefix plan (`prefill.py`, as extraction and generation group them):
each shared prefix's KV cache is computed once. A batch of prompts then runs its own
tokens but the last, left-padded, on top of that cache; the cache is repeated `rows`
times per prompt and the last token runs once for all rows, row 0 unpatched and row
1+i with the block-`layers[i]` output at that token replaced by (or added) `vectors`.
Greedy decoding continues, unpatched, only for rows that `keep` accepts, so a
wrong first token costs nothing more. Every row reads exactly what its own full forward
would (tested against single-prompt runs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from taskvec.model.capture import block_output, decoder_blocks
from taskvec.model.kvcache import cache_kw, from_cache, select_rows, to_cache
from taskvec.model.prefill import Prefix, PrefixCache, PrefixForward, node_batches, plan
from taskvec.model.ragged import left_padded

Keep = Callable[[int, str], bool]  # (prompt index, continuation text so far) -> keep generating


@dataclass(frozen=True)
class RowOutput:
    """One row's greedy continuation (decoded, special tokens skipped) and its first-step logits
    at `watch` ids."""

    text: str
    watched: torch.Tensor


@dataclass(frozen=True)
class RunSpec:
    """What to run for every prompt: patched layers and their vectors, generation budget, ids to watch."""

    layers: Sequence[int] = ()
    vectors: dict[int, torch.Tensor] | None = None
    mode: str = "replace"
    scale: float = 1.0
    max_new_tokens: int = 1
    watch: Sequence[int] = ()

    @property
    def rows(self) -> int:
        return 1 + len(self.layers)


def _repeat_rows(value: Any, n: int, rows: int) -> Any:
    """`value` (a tensor or a tuple of them) with its batch of `n` rows repeated to `rows` rows;
    others as they are."""
    if isinstance(value, tuple):
        return tuple(_repeat_rows(v, n, rows) for v in value)
    if isinstance(value, torch.Tensor) and value.dim() > 1 and value.shape[0] == n and rows != n:
        return value.repeat(rows // n, *([1] * (value.dim() - 1)))
    return value


@contextmanager
def _growing(
    blocks: nn.ModuleList, n: int, vectors: dict[int, torch.Tensor], mode: str, scale: float
) -> Iterator[None]:
    """While active, block L's output gains n rows: the first n (unpatched) with the last token
    replaced by (or plus scale times) vectors[L]; each block's per-row inputs (mask, rotary
    embeddings, positions) follow the row count."""

    def pre_hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        rows = (args[0] if args else kwargs["hidden_states"]).shape[0]
        return args, {
            k: _repeat_rows(v, n, rows) if k != "cache" and k != "past_key_values" else v
            for k, v in kwargs.items()
        }

    def grow(
        vector: torch.Tensor,
    ) -> Callable[[nn.Module, tuple, torch.Tensor | tuple], torch.Tensor | tuple]:
        def hook(
            _module: nn.Module, _args: tuple, output: torch.Tensor | tuple
        ) -> torch.Tensor | tuple:
            hidden = block_output(output)
            new = hidden[:n].clone()
            vec = vector.to(new.device, new.dtype)
            new[:, -1] = vec if mode == "replace" else new[:, -1] + scale * vec
            grown = torch.cat([hidden, new])
            return (grown, *output[1:]) if isinstance(output, tuple) else grown

        return hook

    handles = []
    try:
        for block in blocks:
            handles.append(block.register_forward_pre_hook(pre_hook, with_kwargs=True))
        for layer, vector in vectors.items():
            handles.append(blocks[layer].register_forward_hook(grow(vector)))
        yield
    finally:
        for handle in handles:
            handle.remove()


class GreedyRunner:
    """Runs prompts as described in the module docstring; one instance per model."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 8,
        max_batch_tokens: int = 4096,
    ) -> None:
        self.model = model
        self.base = model.get_decoder()
        self.tokenizer = tokenizer
        self.blocks = decoder_blocks(model)
        self.batch_size, self.max_batch_tokens = batch_size, max_batch_tokens
        self.prefix_forward = PrefixForward(model)
        self.cache_kw = cache_kw(self.base)
        self.special = set(tokenizer.all_special_ids)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def run(
        self, prompts: Sequence[Sequence[int]], spec: RunSpec, keep: Keep
    ) -> list[list[RowOutput]]:
        """Per prompt, its `spec.rows` row outputs (row 0 unpatched, row 1+i patched at `spec.layers[i]`)."""
        tree = plan(prompts)
        lengths = [len(p) for p in prompts]
        batches = node_batches(tree, lengths, self.max_batch_tokens, self.batch_size, False)
        prefixes = PrefixCache(tree, prompts, self.prefix_forward, range(len(prompts)))
        out: list[list[RowOutput]] = [[] for _ in prompts]
        for batch, prefix in prefixes.batches(batches):
            rows = self._batch([list(prompts[m]) for m in batch], prefix, spec, keep, batch)
            for m, prompt_rows in zip(batch, rows, strict=True):
                out[m] = prompt_rows
        return out

    def _batch(
        self,
        prompts: list[Sequence[int]],
        prefix: Prefix,
        spec: RunSpec,
        keep: Keep,
        owners: list[int],
    ) -> list[list[RowOutput]]:
        """One batch: the heads on the prefix, then the last token for every row, then greedy steps.

        Rows are group-major: row g * B + b is prompt b, unpatched (g = 0) or patched at layers[g - 1].
        """
        cache, mask, nxt = self._heads(prompts, prefix)
        n, layers = len(prompts), sorted(spec.layers)
        r = 1 + len(layers)
        mask = torch.cat([mask, mask.new_ones(n, 1)], dim=1)
        positions = nxt[:, None]
        last = torch.tensor([int(p[-1]) for p in prompts], device=self.device)[:, None]
        if layers and spec.vectors is not None:
            logits, cache = self._branching_step(last, mask, positions, cache, layers, spec)
        else:
            logits = self._step(last, mask, positions, cache)
        rep = torch.arange(n, device=self.device).repeat(r)
        # spec order -> sorted groups
        order = [1 + sorted(spec.layers).index(layer) for layer in spec.layers]
        watched = logits[:, list(spec.watch)].float().cpu()
        tokens = self._decode_loop(
            logits,
            cache,
            mask[rep],
            positions[rep],
            spec.max_new_tokens,
            [owners[b] for b in rep.tolist()],
            keep,
        )
        texts = [str(self.tokenizer.decode(t, skip_special_tokens=True)) for t in tokens]
        return [
            [RowOutput(texts[g * n + b], watched[g * n + b]) for g in (0, *order)] for b in range(n)
        ]

    def _branching_step(
        self,
        last: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: DynamicCache,
        layers: list[int],
        spec: RunSpec,
    ) -> tuple[torch.Tensor, DynamicCache]:
        """The last token of every prompt, unpatched and patched at each of `layers` (sorted).

        A row patched at L equals the unpatched one up to block L, so it is created only there:
        block L's output gets a copy of the unpatched rows with the patch applied, and later
        blocks run on the grown batch. Returns group-major logits and a cache holding all rows.
        """
        n, kv = last.shape[0], from_cache(cache)
        # row groups entering block k
        groups = [1 + sum(layer < k for layer in layers) for k in range(len(self.blocks))]
        grown = to_cache(
            [(k.repeat(g, 1, 1, 1), v.repeat(g, 1, 1, 1)) for (k, v), g in zip(kv, groups)]
            if kv
            else None
        )
        with _growing(
            self.blocks,
            n,
            {layer: spec.vectors[layer] for layer in layers} if spec.vectors else {},
            spec.mode,
            spec.scale,
        ):
            logits = self._step(last, mask, positions, grown)
        full = []
        # every row at every block: not-yet-patched rows share the unpatched entries
        for k, block_kv in enumerate(from_cache(grown)):
            index = torch.tensor(
                [
                    (g if g == 0 or layers[g - 1] < k else 0) * n + b
                    for g in range(1 + len(layers))
                    for b in range(n)
                ],
                device=self.device,
            )
            full.extend(select_rows([block_kv], index))
        return logits, to_cache(full)

    def _heads(
        self, prompts: list[Sequence[int]], prefix: Prefix
    ) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        """Run every prompt but its last token on the prefix, left-padded; the cache, its mask,
        the last token's position."""
        start, n = prefix.length, len(prompts)
        heads = left_padded([p[start:-1] for p in prompts], [start] * n)
        mask = heads.mask(start).long().to(self.device)
        cache = to_cache(prefix.kv or None, rows=n)
        nxt = torch.tensor([start + k for k in heads.lens], device=self.device)
        if heads.width:
            self.base(
                input_ids=heads.ids.to(self.device),
                attention_mask=mask,
                position_ids=heads.positions.to(self.device),
                use_cache=True,
                **{self.cache_kw: cache},
            )
        return cache, mask, nxt

    def _step(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kw: cache},
        )
        return out.logits[:, -1]

    def _decode_loop(
        self,
        logits: torch.Tensor,
        cache: DynamicCache,
        mask: torch.Tensor,
        positions: torch.Tensor,
        max_new: int,
        owners: list[int],
        keep: Keep,
    ) -> list[list[int]]:
        """Greedy tokens per row; a row stops at a special token, when `keep` rejects its text,
        or at `max_new`."""
        tokens: list[list[int]] = [[] for _ in owners]
        alive = list(range(len(owners)))
        for step in range(max_new):
            nxt = logits.argmax(-1).tolist()
            still = []
            for j, row in enumerate(alive):
                tokens[row].append(nxt[j])
                if nxt[j] not in self.special and keep(
                    owners[row], str(self.tokenizer.decode(tokens[row], skip_special_tokens=True))
                ):
                    still.append(j)
            if step + 1 == max_new or not still:
                break
            index = torch.tensor(still, device=self.device)
            cache = to_cache(select_rows(from_cache(cache), index) or None)
            mask = torch.cat([mask[index], mask.new_ones(len(still), 1)], dim=1)
            positions = positions[index] + 1
            ids = torch.tensor([nxt[j] for j in still], device=self.device)[:, None]
            alive = [alive[j] for j in still]
            logits = self._step(ids, mask, positions, cache)
        return tokens
