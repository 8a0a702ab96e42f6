"""Generation with shared-prefix reuse and continuous batching: rows leave as they finish, waiting
prompts join.

The prompts' shared prefixes (the prefix plan extraction uses, `plan_prefix_tree`) are
prefilled once; each prompt then prefills only its own suffix on top of its prefix's KV
cache. The prefix all prompts share (the tree's root: the few-shot demonstrations) is
never copied per row: rows attend to its one copy through the `taskvec` attention
implementation (`attention.py`), so a step reads it once for the whole batch. Each decode
step advances every active row by at least one token. A row that writes eos or a complete
answer sentence leaves at once and a waiting prompt takes its place, so no step
is spent on a finished row. Rows of different lengths share one left-padded KV cache with
an attention mask and explicit position ids, so each row computes what it would alone; the
cache has spare columns, so a step writes into it in place. Greedy rows also check
prompt-lookup drafts (`drafts.py`) while the batch has room, keeping those the model agrees
with, and on the CPU the linear layers run on prepacked weights (`packed.py`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence, Set
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from taskvec.model.attention import SharedPrefix, supports_shared_prefix
from taskvec.model.capture import capture, decoder_blocks
from taskvec.model.drafts import lookup
from taskvec.model.kvcache import (
    KV,
    cache_kw,
    concat_rows,
    from_cache,
    growing_cache,
    keep_rows,
    left_pad,
    select_rows,
    to_cache,
)
from taskvec.model.packed import packed_linears
from taskvec.model.prefix import PrefixNode, plan_prefix_tree
from taskvec.prompts.config import Generation


@dataclass(frozen=True)
class Finished:
    """One prompt's generated tokens (eos or the answer-stop match included) and why it ended."""

    idx: int
    tokens: list[int]
    reason: str  # "eos", "answer" (the stop pattern matched) or "length" (max_new_tokens reached)
    vectors: torch.Tensor | None = (
        None  # with a Reading: (n_layers, n_positions, hidden) float32 on CPU
    )


@dataclass(frozen=True)
class Reading:
    """Hidden states to read during the prefill (one-pass extraction): block outputs of `layers`
    at `token_indices[i]`, absolute token indices into prompt i, in position order (none: nothing read)."""

    layers: list[int]
    token_indices: Sequence[Sequence[int]]


@dataclass(frozen=True)
class _Prefix:
    """A prefilled prefix: its KV cache (one row) after the shared root prefix, and the vectors read inside it
    (root included), by absolute token index."""

    kv: KV | None = None
    known: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass
class _Row:
    idx: int
    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    rng: torch.Generator | None = None
    vectors: torch.Tensor | None = None


@dataclass
class _Active:
    """The rows decoding together: one left-padded KV cache (appended in place), its mask (rows,
    width), the rows' state."""

    rows: list[_Row] = field(default_factory=list)
    cache: DynamicCache | None = None
    mask: torch.Tensor | None = None


@dataclass
class GenerationStats:
    """Where the time went: prefill (prefixes and suffixes) vs decode steps, and the tokens each produced."""

    prefill_s: float = 0.0
    decode_s: float = 0.0
    prefill_tokens: int = 0
    decode_steps: int = 0
    generated_tokens: int = 0
    draft_tokens: int = 0  # prompt-lookup drafts checked (greedy), and how many of them were right
    accepted_tokens: int = 0


def plan_generation(prompt_ids: Sequence[Sequence[int]], prefix_cache: bool = True) -> PrefixNode:
    """The prefix tree generation follows (the extraction plan); a bare root when prefix reuse is off."""
    if not prefix_cache:
        return PrefixNode(0, list(range(len(prompt_ids))))
    return plan_prefix_tree(prompt_ids, [len(ids) - 1 for ids in prompt_ids])


class Generator:
    """Greedy or seeded-sampling generation over many prompts, `batch_size` rows decoding at a time.

    Greedy output equals `model.generate` at batch size 1 (up to floating-point noise in
    near-ties). Sampling draws each row from its own generator seeded by (seed, prompt index),
    so outputs do not depend on batching, order or resumption. With `packed` (the default) the
    model's linear layers run on oneDNN-prepacked weights while `run` goes on (CPU float32 only, `packed.py`).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        settings: Generation,
        eos_ids: Sequence[int],
        batch_size: int,
        tokenizer: PreTrainedTokenizerBase | None = None,
        stop: re.Pattern[str] | None = None,
        prefix_cache: bool = True,
        seed: int = 0,
        ignore_eos: bool = False,
        reading: Reading | None = None,
        packed: bool = True,
        draft_tokens: int = 8,
    ) -> None:
        if stop is not None and tokenizer is None:
            raise ValueError("a stop pattern needs the tokenizer to decode rows")
        self.model, self.settings, self.batch_size = model, settings, batch_size
        self.eos = frozenset() if ignore_eos else frozenset(int(e) for e in eos_ids)
        self.tokenizer, self.stop, self.prefix_cache, self.seed, self.packed = (
            tokenizer,
            stop,
            prefix_cache,
            seed,
            packed,
        )
        self.draft_tokens = draft_tokens
        self.base = model.get_decoder()
        self.reading = reading
        self.blocks = decoder_blocks(model) if reading is not None else None
        self.device = next(model.parameters()).device
        self.stats = GenerationStats()
        self.shared: SharedPrefix | None = (
            None  # the root prefix's KV (one row) while a run uses it
        )
        self.shared_len = 0
        self._warpers = (
            [TemperatureLogitsWarper(settings.temperature), TopPLogitsWarper(settings.top_p)]
            if settings.do_sample
            else []
        )

    def run(
        self,
        prompt_ids: Sequence[Sequence[int]],
        skip: Set[int] = frozenset(),
        on_step: Callable[[GenerationStats], None] | None = None,
    ) -> Iterator[Finished]:
        """Yield each prompt's result as it finishes (not in input order); prompts in `skip` are not run."""
        tree = plan_generation(prompt_ids, self.prefix_cache)
        self.shared, self.shared_len = (
            None,
            tree.prefix_len if tree.prefix_len and supports_shared_prefix(self.model) else 0,
        )
        parent = {id(c): n for n in tree.walk() for c in n.children}
        queue = [(m, node) for node in tree.walk() for m in node.members if m not in skip]
        remaining = {
            id(n): sum(m not in skip for d in n.walk() for m in d.members) for n in tree.walk()
        }
        prefixes: dict[int, _Prefix] = {}
        active = _Active()
        with packed_linears(self.model) if self.packed else nullcontext():
            while queue or active.rows:
                free = self.batch_size - len(active.rows)
                if free > 0 and queue:
                    node = queue[0][1]
                    group = [m for m, n in queue[:free] if n is node]
                    del queue[: len(group)]
                    prefix = self._prefix(node, prompt_ids, parent, prefixes)
                    yield from self._join(
                        active, [list(prompt_ids[m]) for m in group], group, node.prefix_len, prefix
                    )
                    self._release(node, len(group), parent, remaining, prefixes)
                if active.rows:
                    yield from self._step(active)
                if on_step is not None:
                    on_step(self.stats)
        self.shared = None

    def _prefix(
        self,
        node: PrefixNode,
        prompt_ids: Sequence[Sequence[int]],
        parent: dict[int, PrefixNode],
        prefixes: dict[int, _Prefix],
    ) -> _Prefix:
        """`node`'s prefix (KV cache of one row, vectors read inside it), computed once on top of
        its parent's."""
        if id(node) in prefixes:
            return prefixes[id(node)]
        up = parent.get(id(node))
        start = up.prefix_len if up is not None else 0
        prefix = self._prefix(up, prompt_ids, parent, prefixes) if up is not None else _Prefix()
        if node.prefix_len > start:
            member = next(n.members[0] for n in node.walk() if n.members)
            ids = torch.as_tensor(
                np.asarray(prompt_ids[member][start : node.prefix_len], dtype=np.int64),
                device=self.device,
            )[None]
            wanted = sorted(
                {
                    t
                    for n in node.walk()
                    for m in n.members
                    for t in self._indices(m)
                    if start <= t < node.prefix_len
                }
            )
            prefix = self._extend(prefix, ids, start, wanted)
        if up is None and self.shared_len:  # the root: every row reads its one copy
            self.shared, prefix = prefix.kv, _Prefix(None, prefix.known)
        prefixes[id(node)] = prefix
        return prefix

    def _shared_kw(self) -> dict[str, SharedPrefix]:
        return {"shared_prefix": self.shared} if self.shared is not None else {}

    def _indices(self, idx: int) -> Sequence[int]:
        return self.reading.token_indices[idx] if self.reading is not None else ()

    def _forward(
        self, module: torch.nn.Module, index: list[int], **inputs: Any
    ) -> tuple[Any, torch.Tensor | None]:
        """`module(**inputs)`, and with a Reading the outputs of its blocks at flattened token
        rows `index`, (len, layers, hidden)."""
        if self.reading is None or not index or self.blocks is None:
            return module(**inputs), None
        rows = torch.tensor(index, dtype=torch.long, device=self.device)
        with capture(self.blocks, self.reading.layers, rows, None) as captured:
            out = module(**inputs)
        return out, torch.stack(
            [captured[layer].to(self.device) for layer in self.reading.layers], dim=1
        )

    @torch.inference_mode()
    def _extend(self, below: _Prefix, ids: torch.Tensor, start: int, wanted: list[int]) -> _Prefix:
        """Run `ids` (one row, positions from `start`) through every block on top of `below`;
        read `wanted` tokens."""
        t0 = time.perf_counter()
        cache = to_cache(below.kv)
        positions = torch.arange(start, start + ids.shape[1], device=self.device)[None]
        _, read = self._forward(
            self.base,
            [t - start for t in wanted],
            input_ids=ids,
            position_ids=positions,
            use_cache=True,
            **{cache_kw(self.base): cache},
            **self._shared_kw(),
        )
        known = dict(below.known) | (
            {t: read[j] for j, t in enumerate(wanted)} if read is not None else {}
        )
        self.stats.prefill_s += time.perf_counter() - t0
        self.stats.prefill_tokens += ids.shape[1]
        return _Prefix(from_cache(cache), known)

    def _release(
        self,
        node: PrefixNode,
        n: int,
        parent: dict[int, PrefixNode],
        remaining: dict[int, int],
        prefixes: dict[int, _Prefix],
    ) -> None:
        """Count `n` prompts of `node` as started; drop the prefix caches no waiting prompt needs any more."""
        current: PrefixNode | None = node
        while current is not None:
            remaining[id(current)] -= n
            if remaining[id(current)] == 0:
                prefixes.pop(id(current), None)
            current = parent.get(id(current))

    def _join(
        self,
        active: _Active,
        prompts: list[list[int]],
        idxs: list[int],
        start: int,
        prefix: _Prefix,
    ) -> Iterator[Finished]:
        """Prefill the suffixes of `prompts` after the shared `start` tokens, pick their first
        tokens, add them to `active`."""
        logits, new_kv, new_mask, vectors = self._prefill(prompts, idxs, start, prefix)
        rows = [_Row(i, p, rng=self._rng(i), vectors=v) for i, p, v in zip(idxs, prompts, vectors)]
        keep = [r for r, row in enumerate(rows) if not self._advance(row, logits[r])]
        for r, row in enumerate(rows):
            if r not in keep:
                yield self._finish(row)
        if not keep:
            return
        new_kv, new_mask = select_rows(new_kv, keep), new_mask[keep]
        rows = [rows[r] for r in keep]
        # a row's tokens fit; masked-out drafts may overflow it (the cache then grows)
        room = self.settings.max_new_tokens
        if active.cache is None or active.mask is None:
            active.cache, active.mask, active.rows = growing_cache(new_kv, room), new_mask, rows
            return
        width = max(active.mask.shape[1], new_mask.shape[1])
        kv = concat_rows(
            left_pad(from_cache(active.cache), width - active.mask.shape[1]),
            left_pad(new_kv, width - new_mask.shape[1]),
        )
        active.cache = growing_cache(kv, room)
        active.mask = torch.cat([_pad_mask(active.mask, width), _pad_mask(new_mask, width)])
        active.rows += rows

    @torch.inference_mode()
    def _prefill(
        self, prompts: list[list[int]], idxs: list[int], start: int, prefix: _Prefix
    ) -> tuple[torch.Tensor, KV, torch.Tensor, list[torch.Tensor | None]]:
        """Last-token logits, KV cache, mask and read vectors of left-padded suffixes run on
        their node's prefix (expanded per row after the shared root prefix; the cache and mask
        start after the root prefix)."""
        t0 = time.perf_counter()
        lens = [len(p) - start for p in prompts]
        width, own = max(lens), start - self.shared_len
        ids = torch.zeros(len(prompts), width, dtype=torch.long)
        mask = torch.zeros(len(prompts), own + width, dtype=torch.bool)
        positions = torch.full((len(prompts), width), start, dtype=torch.long)
        mask[:, :own] = True
        for r, (p, n) in enumerate(zip(prompts, lens)):
            ids[r, width - n :] = torch.as_tensor(p[start:])
            mask[r, own + width - n :] = True
            positions[r, width - n :] = torch.arange(start, start + n)
        mask = mask.to(self.device)
        cache = to_cache(prefix.kv, len(prompts))
        wanted = [(r, t) for r, i in enumerate(idxs) for t in self._indices(i) if t >= start]
        index = [r * width + width - lens[r] + t - start for r, t in wanted]
        out, read = self._forward(
            self.model,
            index,
            input_ids=ids.to(self.device),
            attention_mask=mask.long(),
            position_ids=positions.to(self.device),
            use_cache=True,
            logits_to_keep=1,
            **{cache_kw(self.model): cache},
            **self._shared_kw(),
        )
        new_kv = from_cache(cache)
        # padded columns hold whatever pad tokens computed: zero them so no NaN can leak
        if width > min(lens):
            new_kv = [(k * mask[:, None, :, None], v * mask[:, None, :, None]) for k, v in new_kv]
        self.stats.prefill_s += time.perf_counter() - t0
        self.stats.prefill_tokens += sum(lens)
        return out.logits[:, -1].float(), new_kv, mask, self._vectors(idxs, prefix, wanted, read)

    def _vectors(
        self,
        idxs: list[int],
        prefix: _Prefix,
        wanted: list[tuple[int, int]],
        read: torch.Tensor | None,
    ) -> list[torch.Tensor | None]:
        """Per row, (layers, positions, hidden) float32 on CPU: read in the suffix, or known from
        the prefix."""
        if self.reading is None:
            return [None] * len(idxs)
        found = {(r, t): read[j] for j, (r, t) in enumerate(wanted)} if read is not None else {}
        return [
            torch.stack(
                [found[(r, t)] if (r, t) in found else prefix.known[t] for t in self._indices(i)],
                dim=1,
            )
            .float()
            .cpu()
            if self._indices(i)
            else None
            for r, i in enumerate(idxs)
        ]

    def _drafts(self, rows: list[_Row]) -> list[list[int]]:
        """Per row, prompt-lookup drafts to check in this step (greedy only): as many as keep the
        step within `batch_size` tokens, so drafts fill the room rows that finished left, never
        more than `draft_tokens` a row."""
        per_row = (
            min(self.draft_tokens, self.batch_size // len(rows) - 1) if not self._warpers else 0
        )
        if per_row <= 0:
            return [[] for _ in rows]
        return [
            lookup(
                np.asarray(row.prompt + row.tokens),
                min(per_row, self.settings.max_new_tokens - len(row.tokens) - 1),
            )
            for row in rows
        ]

    @torch.inference_mode()
    def _step(self, active: _Active) -> Iterator[Finished]:
        """One decode step for every active row: its last token and its drafts, left-padded to one width; the
        accepted drafts stay in the cache, the rest are masked out. Finished rows leave the batch."""
        assert active.cache is not None and active.mask is not None
        t0 = time.perf_counter()
        drafts = self._drafts(active.rows)
        width = 1 + max(map(len, drafts))
        ids = torch.zeros(len(drafts), width, dtype=torch.long)
        positions = torch.zeros(len(drafts), width, dtype=torch.long)
        fed = torch.zeros(len(drafts), width, dtype=torch.bool)
        for r, (row, draft) in enumerate(zip(active.rows, drafts)):
            # the last token's position
            last, n = (
                len(row.prompt) + len(row.tokens) - 1,
                1 + len(draft),
            )
            ids[r, width - n :] = torch.tensor([row.tokens[-1], *draft])
            positions[r] = torch.arange(last + n - width, last + n).clamp_(min=last)
            fed[r, width - n :] = True
        mask = torch.cat([active.mask, fed.to(self.device)], dim=1)
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask.long(),
            position_ids=positions.to(self.device),
            use_cache=True,
            logits_to_keep=width,
            **{cache_kw(self.model): active.cache},
            **self._shared_kw(),
        )
        logits = out.logits.float()
        greedy = logits.argmax(-1).tolist() if not self._warpers else None
        done = []
        for r, (row, draft) in enumerate(zip(active.rows, drafts)):
            if greedy is None:
                finished = self._advance(row, logits[r, -1])
            else:
                finished, accepted = self._accept(row, greedy[r][width - 1 - len(draft) :], draft)
                if accepted < len(draft):  # drafts the model did not agree with leave no trace
                    mask[r, mask.shape[1] - len(draft) + accepted :] = False
            if finished:
                done.append(r)
        active.mask = mask
        self.stats.decode_s += time.perf_counter() - t0
        self.stats.decode_steps += 1
        if done:
            for r in done:
                yield self._finish(active.rows[r])
            self._drop(active, done)

    def _drop(self, active: _Active, done: list[int]) -> None:
        """Remove finished rows, and the leading columns no remaining row uses."""
        assert active.cache is not None and active.mask is not None
        keep = [r for r in range(len(active.rows)) if r not in set(done)]
        active.rows = [active.rows[r] for r in keep]
        if not keep:
            active.cache, active.mask = None, None
            return
        mask = active.mask[keep]
        unused = int(mask.any(dim=0).long().argmax())  # leading all-padding columns
        keep_rows(active.cache, keep, unused)
        active.mask = mask[:, unused:]

    def _accept(self, row: _Row, guesses: list[int], draft: list[int]) -> tuple[bool, int]:
        """Append the model's greedy token after the last token, then after each draft it agreed
        with, up to the first disagreement or the row's end: (finished, drafts accepted)."""
        accepted = 0
        for token in guesses:
            finished = self._append(row, token)
            if finished or accepted == len(draft) or token != draft[accepted]:
                break
            accepted += 1
        self.stats.draft_tokens += len(draft)
        self.stats.accepted_tokens += accepted
        return finished, accepted

    def _advance(self, row: _Row, logits: torch.Tensor) -> bool:
        """Append the row's next token (from its last-position logits); True when the row is finished."""
        return self._append(row, self._choose(row, logits))

    def _append(self, row: _Row, token: int) -> bool:
        row.tokens.append(token)
        self.stats.generated_tokens += 1
        return self._reason(row) is not None

    def _choose(self, row: _Row, logits: torch.Tensor) -> int:
        if not self._warpers:
            return int(logits.argmax())
        scores = logits[None]
        for warp in self._warpers:
            scores = warp(None, scores)
        probs = torch.softmax(scores, dim=-1).cpu()
        return int(torch.multinomial(probs[0], 1, generator=row.rng))

    def _rng(self, idx: int) -> torch.Generator | None:
        if not self._warpers:
            return None
        return torch.Generator().manual_seed(self.seed * 1_000_003 + idx)

    def _reason(self, row: _Row) -> str | None:
        """Why the row is finished, or None while it goes on."""
        if row.tokens[-1] in self.eos:
            return "eos"
        if self.stop is not None and self.tokenizer is not None:
            if self.stop.search(str(self.tokenizer.decode(row.tokens, skip_special_tokens=True))):
                return "answer"
        if len(row.tokens) >= self.settings.max_new_tokens:
            return "length"
        return None

    def _finish(self, row: _Row) -> Finished:
        reason = self._reason(row)
        assert reason is not None
        return Finished(row.idx, list(row.tokens), reason, row.vectors)


def _pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    """`mask` with False columns in front up to `width`."""
    extra = width - mask.shape[1]
    return mask if extra == 0 else torch.cat([mask.new_zeros(mask.shape[0], extra), mask], dim=1)
