"""Generation with shared-prefix reuse and continuous batching: rows leave as they finish, waiting
prompts join.

The prompts' shared prefixes (the prefix plan extraction uses) are prefilled once, each on its
parent's (`prefill.py`); each prompt then prefills only its own suffix on top of its prefix's KV
cache, all but its last token: the last runs in the row's first decode step, beside the other rows'
tokens (no forward of its own). Copies of one prompt (a sweep's conditions) are one member of the
plan, join side by side and prefill their suffix once. The prefix all prompts share (the tree's
root: the few-shot demonstrations) is never copied per row: rows attend to its one copy through the
`taskvec` attention implementation (`attention.py`, which an `sdpa` model runs while `run` goes on),
so a step reads it once for the whole batch. Each decode step advances every active row by at least
one token. A row that writes eos or a complete answer sentence leaves at once and a waiting prompt
takes its place (`decoding.py` holds the rules), so no step is spent on a finished row. Rows of
different lengths share one left-padded KV cache with an attention mask and explicit position ids
(`ragged.py`), so each row computes what it would alone; the cache has spare columns and rows, so a
step writes into it in place, joining rows are written into spare rows and a finished row's place
is taken by the last row (no copy of the whole cache). Greedy rows also check prompt-lookup drafts
(`drafts.py`) while the batch has room, keeping those the model agrees with, and on the CPU the
linear layers run on prepacked weights (`packed.py`).

Steering (`steering.py`) plugs in at one seam: every forward (a prefix, the suffixes, a decode step)
first tells `RowSteering.plan` which input tokens of which rows are steered. Prompts steered at
every prompt token (`where: prompt/all`) cannot share an unsteered prefix, so each such condition
runs as its own prefix plan, after the plan of the rest.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence, Set
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from taskvec.model.attention import SharedPrefix, use_shared_prefix_attention
from taskvec.model.decoding import GenerationStats, Row, Rules
from taskvec.model.kvcache import add_rows, growing_cache, keep_rows
from taskvec.model.packed import packed_linears
from taskvec.model.prefill import Ids, Prefix, PrefixCache, plan
from taskvec.model.prefix import PrefixNode
from taskvec.model.ragged import pad_front
from taskvec.model.runner import Reading, Runner, StepPlan
from taskvec.model.steering import RowSteering, Steer
from taskvec.prompts.config import Generation

__all__ = ["Finished", "GenerationStats", "Generator", "Reading", "Steer"]


@dataclass(frozen=True)
class Finished:
    """One prompt's generated tokens (eos or the answer-stop match included) and why it ended."""

    idx: int
    tokens: list[int]
    reason: str  # "eos", "answer" (the stop pattern matched) or "length" (max_new_tokens reached)
    vectors: torch.Tensor | None = None  # with a Reading: (n_layers, n_positions, hidden) float32


@dataclass
class _Active:
    """The rows decoding together: one left-padded KV cache (appended in place), its mask (rows,
    width), and the places of rows that finished (`holes`: joining rows take them, the last rows
    fill those left before the next step)."""

    rows: list[Row] = field(default_factory=list)
    cache: DynamicCache | None = None
    mask: torch.Tensor | None = None
    holes: list[int] = field(default_factory=list)

    def admit(
        self,
        rows: list[Row],
        new_kv: list[tuple[torch.Tensor, torch.Tensor]],
        new_mask: torch.Tensor,
        index: list[int],
        room: int,
        batch_size: int,
    ) -> None:
        """Add `rows`, whose KV are rows `index` of `new_kv` (copied straight in, no gathered
        copy): into finished rows' places first (no row moves), then after the last row."""
        new_mask = new_mask[index]
        if self.cache is None or self.mask is None:
            self.cache = growing_cache(new_kv, room, batch_size, index)
            self.mask, self.rows = new_mask, rows
            return
        filled, self.holes = self.holes[: len(rows)], self.holes[len(rows) :]
        places = filled + list(range(len(self.rows), len(self.rows) + len(rows) - len(filled)))
        add_rows(self.cache, new_kv, index, places)
        width = max(self.mask.shape[1], new_mask.shape[1])
        mask, new_mask = pad_front(self.mask, width), pad_front(new_mask, width)
        mask[filled] = new_mask[: len(filled)]
        self.mask = torch.cat([mask, new_mask[len(filled) :]])
        for place, row in zip(filled, rows):
            self.rows[place] = row
        self.rows += rows[len(filled) :]

    def settle(self) -> None:
        """Before a step: the places of finished rows no joining row took are filled by the last
        rows (the others stay where they are), and the leading columns no row uses are cut."""
        if self.cache is None or self.mask is None:
            return
        finished, n = set(self.holes), len(self.rows) - len(self.holes)
        self.holes = []
        if not n:
            self.rows, self.cache, self.mask = [], None, None
            return
        keep = list(range(n))
        holes = [r for r in range(n) if r in finished]
        for hole, last in zip(holes, [r for r in range(n, len(self.rows)) if r not in finished]):
            keep[hole] = last
        mask = self.mask[keep] if finished else self.mask
        unused = int(mask.any(dim=0).long().argmax())  # leading all-padding columns
        if finished or unused:
            self.rows = [self.rows[r] for r in keep]
            keep_rows(self.cache, keep, unused)
            self.mask = mask[:, unused:]


def plan_groups(
    prompt_ids: Sequence[Sequence[int]], steers: Sequence[Steer | None], prefix_cache: bool = True
) -> list[tuple[PrefixNode, Steer | None]]:
    """Prefix plans to run one after the other, each with the steer of its prefixes: one over the
    prompts whose prefix is unsteered (no steer, `where: last/generated`), then one per condition
    steering every prompt token. Copies of one prompt (its conditions) are one member of the
    tree, listed side by side, so they join together and share their suffix's prefill."""
    groups: dict[int, tuple[Steer | None, list[int]]] = {0: (None, [])}
    for i, steer in enumerate(steers):
        key = id(steer) if steer is not None and steer.in_prompt else 0
        groups.setdefault(key, (steer if key else None, []))[1].append(i)
    plans = []
    for steer, members in groups.values():
        copies: dict[tuple[int, ...], list[int]] = {}
        for i in members:  # a prompt repeated (one per condition) is planned once
            copies.setdefault(tuple(prompt_ids[i]), []).append(i)
        if copies:
            rows = list(copies.values())
            tree = plan([prompt_ids[row[0]] for row in rows], prefix_cache)
            for node in tree.walk():
                node.members = [i for m in node.members for i in rows[m]]
            plans.append((tree, steer))
    return plans


class Generator:
    """Greedy or seeded-sampling generation over many prompts, `batch_size` rows decoding at a time.

    Greedy output equals `model.generate` at batch size 1 (up to floating-point noise in
    near-ties). Sampling draws each row from its own generator seeded by (seed, prompt index),
    so outputs do not depend on batching, order or resumption. With `packed` (the default) the
    model's linear layers run on oneDNN-prepacked weights while `run` goes on (CPU float32 only).
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
        self.model, self.settings, self.batch_size = model, settings, batch_size
        self.prefix_cache, self.packed, self.draft_tokens = prefix_cache, packed, draft_tokens
        self.stats = GenerationStats()
        eos = frozenset() if ignore_eos else frozenset(int(e) for e in eos_ids)
        self.rules = Rules(settings, eos, tokenizer, stop, seed, self.stats)
        self.runner = Runner(model, reading, self.stats)
        self._steers: Sequence[Steer | None] = ()

    @property
    def shared(self) -> SharedPrefix | None:
        """The root prefix's KV (one row) every row reads, while a plan uses one."""
        return self.runner.shared

    @property
    def shared_len(self) -> int:
        return self.runner.shared_len

    def run(
        self,
        prompt_ids: Sequence[Sequence[int]],
        skip: Set[int] = frozenset(),
        on_step: Callable[[GenerationStats], None] | None = None,
        steers: Sequence[Steer | None] | None = None,
    ) -> Iterator[Finished]:
        """Yield each prompt's result as it finishes (not in input order); prompts in `skip` are not
        run.

        `steers[i]` (if given) is prompt i's steering condition, or None for an unsteered prompt."""
        self._steers = steers if steers is not None else [None] * len(prompt_ids)
        conditions = list({id(s): s for s in self._steers if s is not None}.values())
        runner = self.runner
        with ExitStack() as stack:
            if self.packed:
                stack.enter_context(packed_linears(self.model))
            if conditions:
                steering = RowSteering(runner.blocks, conditions, runner.device)
                runner.steering = stack.enter_context(steering.installed())
            shared = stack.enter_context(use_shared_prefix_attention(self.model))
            for tree, steer in plan_groups(prompt_ids, self._steers, self.prefix_cache):
                yield from self._run_plan(tree, steer, prompt_ids, skip, shared, on_step)
        runner.shared, runner.steering = None, None

    def _run_plan(
        self,
        tree: PrefixNode,
        steer: Steer | None,
        prompt_ids: Sequence[Sequence[int]],
        skip: Set[int],
        shared: bool,
        on_step: Callable[[GenerationStats], None] | None,
    ) -> Iterator[Finished]:
        """Generate the members of one prefix plan, whose prefixes carry `steer`, until all are
        finished; with `shared` (the `taskvec` attention) every row reads the root prefix's one
        copy."""
        runner = self.runner
        runner.shared = None
        runner.shared_len = tree.prefix_len if shared else 0

        def extend(below: Prefix, ids: Ids, wanted: list[int]) -> Prefix:
            return runner.extend(below, ids, wanted, steer)

        queue = [(m, node) for node in tree.walk() for m in node.members if m not in skip]
        prefixes = PrefixCache(
            tree, prompt_ids, extend, {m for m, _ in queue}, runner.indices, runner.share_root
        )
        active = _Active()
        while queue or active.rows:
            free = self.batch_size - len(active.rows) + len(active.holes)
            if free > 0 and queue:
                node = queue[0][1]
                group = [m for m, n in queue[:free] if n is node]
                del queue[: len(group)]
                prompts = [list(prompt_ids[m]) for m in group]
                yield from self._join(active, prompts, group, node.prefix_len, prefixes.get(node))
                prefixes.release(node, len(group))
            active.settle()
            if active.rows:
                yield from self._step(active)
            if on_step is not None:
                on_step(self.stats)
        runner.shared = None

    def _join(
        self, active: _Active, prompts: list[list[int]], idxs: list[int], start: int, prefix: Prefix
    ) -> Iterator[Finished]:
        """Prefill the suffixes of `prompts` after the shared `start` tokens and add them to
        `active`. Without a reading a row's last prompt token waits for its first decode step (no
        forward of its own); with one it runs here and picks the row's first token."""
        steers = [self._steers[i] for i in idxs]
        rows = [Row(i, p, rng=self.rules.rng(i), steer=s) for i, p, s in zip(idxs, prompts, steers)]
        if self.runner.reading is None and any(len(p) - start > 1 for p in prompts):
            new_kv, new_mask, index = self.runner.prefill_heads(prompts, start, prefix, steers)
        else:
            logits, new_kv, new_mask, vectors = self.runner.prefill(
                prompts, idxs, start, prefix, steers
            )
            for row, v in zip(rows, vectors):
                row.vectors = v
            index = [r for r, row in enumerate(rows) if not self.rules.advance(row, logits[r])]
            for r, row in enumerate(rows):
                if r not in index:
                    yield self._finish(row)
            if not index:
                return
            rows = [rows[r] for r in index]
        room = 2 * self.settings.max_new_tokens  # columns a row's tokens and drafts take
        active.admit(rows, new_kv, new_mask, index, room, self.batch_size)

    def _step(self, active: _Active) -> Iterator[Finished]:
        """One decode step for every active row: its last token and its drafts, left-padded to one
        width; the accepted drafts stay in the cache, the rest are masked out. Finished rows'
        places become holes (joining rows take them, `_Active.settle` fills the rest)."""
        assert active.cache is not None and active.mask is not None
        t0 = time.perf_counter()
        rows = active.rows
        plan = StepPlan.build(
            [
                ((row.tokens or row.prompt)[-1], len(row.prompt) + len(row.tokens) - 1)
                for row in rows
            ],
            self.rules.draft(rows, self.batch_size, self.draft_tokens),
            [row.steer for row in rows],
            [not row.tokens for row in rows],
        )
        self.stats.prefill_tokens += sum(plan.pending)
        width = plan.ids.shape[1]
        mask = torch.cat([active.mask, plan.fed.to(self.runner.device)], dim=1)
        logits = self.runner.decode(plan, active.cache, mask)
        greedy = logits.argmax(-1).tolist() if self.rules.greedy else None
        done = []
        for r, (row, draft) in enumerate(zip(rows, plan.drafts)):
            if greedy is None:
                finished = self.rules.advance(row, logits[r, -1])
            else:
                guesses = greedy[r][width - 1 - len(draft) :]
                finished, accepted = self.rules.accept(row, guesses, draft)
                if accepted < len(draft):  # drafts the model did not agree with leave no trace
                    mask[r, mask.shape[1] - len(draft) + accepted :] = False
            if finished:
                done.append(r)
        active.mask = mask
        self.stats.decode_s += time.perf_counter() - t0
        self.stats.decode_steps += 1
        active.holes = done
        for r in done:
            yield self._finish(rows[r])

    def _finish(self, row: Row) -> Finished:
        reason = self.rules.reason(row)
        assert reason is not None
        return Finished(row.idx, list(row.tokens), reason, row.vectors)
