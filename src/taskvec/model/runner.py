"""The forwards of generation: a prefix, the prompts' suffixes on their prefix, a decode step.

The scheduler (`generation.Generator`) decides what runs; the runner runs it: it builds the
left-padded inputs, passes the shared root prefix (read once by every row), reads the requested
hidden states (one-pass extraction) and tells the steering seam, before each forward, which
input tokens of which rows are steered.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel

from taskvec.model.attention import SharedPrefix
from taskvec.model.capture import capture, decoder_blocks
from taskvec.model.decoding import GenerationStats
from taskvec.model.kvcache import KV, cache_kw, from_cache, to_cache
from taskvec.model.prefill import Ids, Prefix, PrefixForward
from taskvec.model.ragged import left_padded
from taskvec.model.steering import RowSteering, Steer, prompt_mask, step_mask


@dataclass(frozen=True)
class Reading:
    """Hidden states to read during the prefill (one-pass extraction): block outputs of `layers` at
    `token_indices[i]`, absolute token indices into prompt i, in position order (none: nothing
    read)."""

    layers: list[int]
    token_indices: Sequence[Sequence[int]]


@dataclass(frozen=True)
class StepPlan:
    """One decode step's input: per row its last token then its drafts, left-padded to one width."""

    ids: torch.Tensor  # (rows, width)
    positions: torch.Tensor
    fed: torch.Tensor  # bool: which columns hold a row's tokens (the rest is padding)
    drafts: list[list[int]]
    steers: list[Steer | None]
    pending: list[bool]  # rows whose first token is their last prompt token (no token yet)

    @classmethod
    def build(
        cls,
        contexts: Sequence[tuple[int, int]],
        drafts: list[list[int]],
        steers: list[Steer | None],
        pending: list[bool],
    ) -> StepPlan:
        """`contexts[r]`: row r's last token and its position."""
        rows = [[token, *draft] for (token, _), draft in zip(contexts, drafts)]
        step = left_padded(rows, [last for _, last in contexts])
        return cls(step.ids, step.positions, step.fed, drafts, steers, pending)


def _without_padding(kv: KV, mask: torch.Tensor, padded: bool) -> KV:
    """`kv` with its padded columns (`mask` False) zeroed when the batch has any: they hold what
    pad tokens computed, which must not leak NaN into attention."""
    if not padded:
        return kv
    return [(k * mask[:, None, :, None], v * mask[:, None, :, None]) for k, v in kv]


class Runner:
    """Runs generation's forwards on `model` (see the module docstring); times and counts go to
    `stats`."""

    def __init__(
        self, model: PreTrainedModel, reading: Reading | None, stats: GenerationStats
    ) -> None:
        self.model, self.base, self.reading, self.stats = model, model.get_decoder(), reading, stats
        self.blocks = decoder_blocks(model)
        self.device = next(model.parameters()).device
        self.prefix_forward = PrefixForward(model, reading.layers if reading is not None else ())
        self.shared: SharedPrefix | None = (
            None  # the root prefix's KV (one row) while a plan uses it
        )
        self.shared_len = 0
        self.steering: RowSteering | None = None

    def indices(self, idx: int) -> Sequence[int]:
        """The token indices of prompt `idx` to read."""
        return self.reading.token_indices[idx] if self.reading is not None else ()

    def share_root(self, prefix: Prefix) -> Prefix:
        """The root prefix: with shared-prefix attention every row reads its one copy
        (`self.shared`)."""
        if not self.shared_len:
            return prefix
        self.shared = prefix.kv
        return Prefix(prefix.length, None, prefix.known)

    def _shared_kw(self) -> dict[str, SharedPrefix]:
        return {"shared_prefix": self.shared} if self.shared is not None else {}

    def _steer(self, steers: Sequence[Steer | None], mask: torch.Tensor) -> None:
        """The seam: which input tokens of which rows the next forward steers (every forward)."""
        if self.steering is not None:
            self.steering.plan(steers, mask)

    def _forward(
        self, module: torch.nn.Module, index: list[int], **inputs: Any
    ) -> tuple[Any, torch.Tensor | None]:
        """`module(**inputs)`, and with a Reading its blocks' outputs at flattened token rows
          `index`,
        (len, layers, hidden)."""
        if self.reading is None or not index:
            return module(**inputs), None
        rows = torch.tensor(index, dtype=torch.long, device=self.device)
        with capture(self.blocks, self.reading.layers, rows, None) as captured:
            out = module(**inputs)
        read = [captured[layer].to(self.device) for layer in self.reading.layers]
        return out, torch.stack(read, dim=1)

    @torch.inference_mode()
    def extend(self, below: Prefix, ids: Ids, wanted: list[int], steer: Steer | None) -> Prefix:
        """Run `ids` (one row) through every block on top of `below`; read `wanted`. A prefix's
        steer (if any) steers every prompt token."""
        t0 = time.perf_counter()
        self._steer([steer], torch.full((1, len(ids)), steer is not None))
        prefix = self.prefix_forward(below, ids, wanted, **self._shared_kw())
        self.stats.prefill_s += time.perf_counter() - t0
        self.stats.prefill_tokens += len(ids)
        return prefix

    @torch.inference_mode()
    def prefill(
        self,
        prompts: list[list[int]],
        idxs: list[int],
        start: int,
        prefix: Prefix,
        steers: list[Steer | None],
    ) -> tuple[torch.Tensor, KV, torch.Tensor, list[torch.Tensor | None]]:
        """Last-token logits, KV cache, mask and read vectors of left-padded suffixes run on their
        node's prefix (expanded per row after the shared root prefix; the cache and mask start
        after it)."""
        t0 = time.perf_counter()
        batch = left_padded([p[start:] for p in prompts], [start] * len(prompts))
        lens, width = batch.lens, batch.width
        mask = batch.mask(start - self.shared_len).to(self.device)
        cache = to_cache(prefix.kv, len(prompts))
        wanted = [(r, t) for r, i in enumerate(idxs) for t in self.indices(i) if t >= start]
        index = [batch.first[r] + t - start for r, t in wanted]
        self._steer(steers, prompt_mask(steers, lens, width))
        out, read = self._forward(
            self.model,
            index,
            input_ids=batch.ids.to(self.device),
            attention_mask=mask.long(),
            position_ids=batch.positions.to(self.device),
            use_cache=True,
            logits_to_keep=1,
            **{cache_kw(self.model): cache},
            **self._shared_kw(),
        )
        new_kv = _without_padding(from_cache(cache), mask, width > min(lens))
        self.stats.prefill_s += time.perf_counter() - t0
        self.stats.prefill_tokens += sum(lens)
        return out.logits[:, -1].float(), new_kv, mask, self._vectors(idxs, prefix, wanted, read)

    @torch.inference_mode()
    def prefill_heads(
        self, prompts: list[list[int]], start: int, prefix: Prefix, steers: list[Steer | None]
    ) -> tuple[KV, torch.Tensor, list[int]]:
        """KV cache and mask of the suffixes but their last token (which a row's first decode step
        runs), and which of their rows is each prompt's. Repeated prompts (one per condition) run
        once: their tokens before the last are steered alike (rows of one plan share their
        prefixes' steering)."""
        t0 = time.perf_counter()
        distinct: dict[tuple[int, ...], int] = {}
        which = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
        heads = [list(p[start:-1]) for p in distinct]
        head_steers: list[Steer | None] = [None] * len(heads)
        for u, steer in zip(which, steers):
            head_steers[u] = steer
        batch = left_padded(heads, [start] * len(heads))
        mask = batch.mask(start - self.shared_len).to(self.device)
        in_prompt = torch.tensor([s is not None and s.in_prompt for s in head_steers])
        self._steer(head_steers, batch.fed & in_prompt[:, None])
        cache = to_cache(prefix.kv, len(heads))
        self.base(
            input_ids=batch.ids.to(self.device),
            attention_mask=mask.long(),
            position_ids=batch.positions.to(self.device),
            use_cache=True,
            **{cache_kw(self.base): cache},
            **self._shared_kw(),
        )
        kv = _without_padding(from_cache(cache), mask, batch.width > min(batch.lens))
        self.stats.prefill_s += time.perf_counter() - t0
        self.stats.prefill_tokens += sum(batch.lens)
        return kv, mask, which

    def _vectors(
        self,
        idxs: list[int],
        prefix: Prefix,
        wanted: list[tuple[int, int]],
        read: torch.Tensor | None,
    ) -> list[torch.Tensor | None]:
        """Per row, (layers, positions, hidden) float32 on CPU: read in the suffix, or known from
        the prefix."""
        if self.reading is None:
            return [None] * len(idxs)
        found = {(r, t): read[j] for j, (r, t) in enumerate(wanted)} if read is not None else {}
        out: list[torch.Tensor | None] = []
        for r, i in enumerate(idxs):
            got = [found[(r, t)] if (r, t) in found else prefix.known[t] for t in self.indices(i)]
            out.append(torch.stack(got, dim=1).float().cpu() if got else None)
        return out

    @torch.inference_mode()
    def decode(self, plan: StepPlan, cache: DynamicCache, mask: torch.Tensor) -> torch.Tensor:
        """Logits (rows, width, vocab) float32 of one decode step; `mask` covers the cache and the
        step."""
        self._steer(plan.steers, step_mask(plan.steers, plan.fed, plan.pending))
        out = self.model(
            input_ids=plan.ids.to(self.device),
            attention_mask=mask.long(),
            position_ids=plan.positions.to(self.device),
            use_cache=True,
            logits_to_keep=plan.ids.shape[1],
            **{cache_kw(self.model): cache},
            **self._shared_kw(),
        )
        return out.logits.float()
