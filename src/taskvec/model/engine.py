"""The forward loop: shared-prefix KV reuse, length-sorted suffix batches, on-device gathering."""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import DynamicCache, PretrainedConfig, PreTrainedModel

from taskvec.model.attention import supports_shared_prefix
from taskvec.model.capture import StopForward, capture, decoder_blocks
from taskvec.model.kvcache import KV, cache_kw, from_cache, to_cache
from taskvec.model.prefix import PrefixNode, plan_prefix_tree
from taskvec.prompts.item import Item


def _as_ids(ids: Sequence[int] | np.ndarray) -> torch.Tensor:
    """Token ids (list or array) as a 1-D int64 tensor."""
    return torch.as_tensor(np.asarray(ids, dtype=np.int64))


def _first_member(node: PrefixNode) -> int:
    """Any prompt under `node` (all share its prefix)."""
    return next(n.members[0] for n in node.walk() if n.members)


@dataclass(frozen=True)
class Prefix:
    """A computed prompt prefix: its length, KV cache (blocks 0..deepest), and vectors read inside it."""

    length: int = 0
    kv: KV | None = None
    known: dict[int, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchResult:
    """Vectors for a batch: `vectors[i]` is (n_layers, n_positions, hidden) float32 on CPU."""

    idxs: list[int]
    vectors: torch.Tensor


def make_batches(
    lengths: dict[int, int], max_tokens: int, max_samples: int, packed: bool
) -> list[list[int]]:
    """Length-sorted batches within `max_tokens`: summed lengths if packed, else samples x longest."""
    batches: list[list[int]] = []
    used = 0
    for i in sorted(lengths, key=lambda k: -lengths[k]):
        current = batches[-1] if batches else []
        if packed:
            size = used + lengths[i]
        else:  # padded to the batch's first (longest) sample
            size = (len(current) + 1) * lengths[current[0]] if current else lengths[i]
        if current and len(current) < max_samples and size <= max_tokens:
            current.append(i)
            used = size
        else:
            batches.append([i])
            used = lengths[i]
    return batches


def packed_mask(
    seg_lens: list[int], prefix_len: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Additive (1, 1, S, prefix+S) mask: every token sees the prefix and, causally, its own segment."""
    seg = torch.repeat_interleave(
        torch.arange(len(seg_lens), device=device), torch.tensor(seg_lens, device=device)
    )
    pos = torch.arange(seg.numel(), device=device)
    allowed = (seg[:, None] == seg[None, :]) & (pos[None, :] <= pos[:, None])
    allowed = torch.cat([allowed.new_ones(seg.numel(), prefix_len), allowed], dim=1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[None, None]


def plan(items: Sequence[Item]) -> PrefixNode:
    """The prefix tree over `items` (positions into it): which prompts share how many leading tokens."""
    return plan_prefix_tree([it.ids for it in items], [len(it.ids) - 1 for it in items])


DEFAULT_BATCH_TOKENS = {"packed": 1024, "padded": 16384}


def choose_batching(batching: str, device: torch.device, model_config: PretrainedConfig) -> str:
    """`packed` or `padded` for a config's `batching` (auto: packed on CPU, padded on GPU).

    The packed mask is full-causal, so models with sliding-window attention always run padded
    (their own mask then applies).
    """
    chosen = batching if batching != "auto" else "padded" if device.type == "cuda" else "packed"
    text = model_config.get_text_config()
    sliding = bool(getattr(text, "use_sliding_window", False)) or "sliding_attention" in (
        getattr(text, "layer_types", None) or []
    )
    return "padded" if chosen == "packed" and sliding else chosen


class Extractor:
    """Runs prompts through a model and returns hidden states at chosen blocks and tokens.

    Prompts sharing a token prefix reuse one KV cache of it. Their suffixes run
    in length-sorted batches, right-padded or packed into one row (no padding,
    which pays on the CPU). With the `taskvec` attention implementation
    (`attention.py`; models loaded as `sdpa` switch to it) every suffix token
    attends to the prefix's one copy and to its own segment only: no per-row
    copy of the prefix, no masked-out block computed. Other implementations get
    the prefix cache expanded over the batch (packed: a block-diagonal mask).
    Either way each token sees exactly what it would in its own full forward pass.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        layers: list[int],
        max_batch_tokens: int,
        batch_size: int,
        prefix_cache: bool = True,
        packed: bool = False,
    ) -> None:
        self.model = model
        self.base = model.get_decoder()
        self.blocks = decoder_blocks(model)
        self.layers = layers
        self.deepest = max(layers)
        self.max_batch_tokens = max_batch_tokens
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache
        self.packed = packed
        self.cache_kw = cache_kw(self.base)
        self.hidden = int(model.config.get_text_config().hidden_size)
        # padded batches read the prefix once instead of a copy per row
        self.shared = supports_shared_prefix(model)
        # tokens run through the model so far (prefixes and suffixes): the progress bar's unit
        self.tokens_done = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def plan(self, items: Sequence[Item]) -> PrefixNode:
        """The prefix tree over `items` (positions into it); a bare root when prefix reuse is off."""
        return plan(items) if self.prefix_cache else PrefixNode(0, list(range(len(items))))

    def run(
        self, items: Sequence[Item], tree: PrefixNode | None = None, done: Set[int] = frozenset()
    ) -> Iterator[BatchResult]:
        """Yield results batch by batch (order follows the plan, `tree` or `plan(items)`, not the input).

        Batches whose items are all in `done` (item idx) are skipped; the others run
        exactly as in a full run, so a resumed run reproduces its vectors bit for bit.
        """
        for batch, prefix in self.prefixed_batches(items, tree, done):
            yield self._forward_batch([items[m] for m in batch], prefix)

    def prefixed_batches(
        self, items: Sequence[Item], tree: PrefixNode | None = None, done: Set[int] = frozenset()
    ) -> Iterator[tuple[list[int], Prefix]]:
        """The suffix batches (positions into `items`) with the computed prefix they run on, in plan order.

        Lets other forwards (patched, generating) reuse the prefix tree and its KV caches.
        """
        yield from self._walk(items, tree or self.plan(items), Prefix(), done)

    def _walk(
        self, items: Sequence[Item], node: PrefixNode, parent: Prefix, done: Set[int]
    ) -> Iterator[tuple[list[int], Prefix]]:
        if all(items[m].idx in done for n in node.walk() for m in n.members):
            return
        prefix = parent
        if node.prefix_len > parent.length:
            ids = items[_first_member(node)].ids[: node.prefix_len]
            wanted = {t for n in node.walk() for m in n.members for t in items[m].token_indices}
            prefix = self._extend(
                parent, ids, sorted(t for t in wanted if parent.length <= t < node.prefix_len)
            )
        for batch in self._node_batches(items, node):
            if not all(items[m].idx in done for m in batch):
                yield batch, prefix
        for child in node.children:
            yield from self._walk(items, child, prefix, done)

    def _node_batches(self, items: Sequence[Item], node: PrefixNode) -> list[list[int]]:
        """The suffix batches of `node`'s own members (positions into `items`)."""
        lengths = {m: len(items[m].ids) - node.prefix_len for m in node.members}
        return make_batches(lengths, self.max_batch_tokens, self.batch_size, self.packed)

    def work(
        self,
        items: Sequence[Item],
        tree: PrefixNode,
        done: Set[int] = frozenset(),
        parent_len: int = 0,
    ) -> int:
        """Tokens `run(items, tree, done)` will compute: the honest measure of how long it takes."""
        if all(items[m].idx in done for n in tree.walk() for m in n.members):
            return 0
        start = max(tree.prefix_len, parent_len)
        suffixes = sum(
            len(items[m].ids) - start
            for batch in self._node_batches(items, tree)
            if not all(items[m].idx in done for m in batch)
            for m in batch
        )
        return (
            start
            - parent_len
            + suffixes
            + sum(self.work(items, child, done, start) for child in tree.children)
        )

    def schedule(self, items: Sequence[Item], tree: PrefixNode) -> list[list[int]]:
        """The batches `run(items, tree)` forms, as item idxs, in the order it runs them."""
        return [
            [items[m].idx for m in batch]
            for node in tree.walk()
            for batch in self._node_batches(items, node)
        ]

    def _forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        prefix: Prefix,
        index: torch.Tensor | None,
        segments: list[int] | None = None,
        keep_cache: bool = False,
    ) -> tuple[dict[int, torch.Tensor], DynamicCache | None]:
        """One causal forward of the base model on top of `prefix`, stopped after the deepest block.

        Batches attend to the prefix's one copy (`shared_prefix`, no cache), packed ones (`segments`) within
        each segment only; without the `taskvec` attention the prefix is the cache, expanded over the batch,
        and packed segments are kept apart by a block-diagonal mask."""
        kwargs: dict[str, object] = {}
        cache, mask = None, None
        if self.shared and not keep_cache:
            kwargs.update(shared_prefix=prefix.kv, segments=segments)
        else:
            if segments is not None:
                mask = packed_mask(segments, prefix.length, self.model.dtype, self.device)
            if prefix.kv is not None or keep_cache:
                cache = to_cache(prefix.kv, input_ids.shape[0])
                kwargs[self.cache_kw] = cache
        with capture(self.blocks, self.layers, index, self.deepest) as captured:
            try:
                self.base(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=cache is not None,
                    **kwargs,
                )
            except StopForward:
                pass
        return captured, cache

    @torch.inference_mode()
    def _extend(self, parent: Prefix, ids: Sequence[int] | np.ndarray, wanted: list[int]) -> Prefix:
        """Append `ids[parent.length:]` to the parent prefix: its KV cache, and the vectors of
        `wanted` positions."""
        start = parent.length
        input_ids = _as_ids(ids[start:])[None].to(self.device)
        positions = torch.arange(start, len(ids), device=self.device)[None]
        index = torch.tensor([t - start for t in wanted], device=self.device) if wanted else None
        captured, cache = self._forward(input_ids, positions, parent, index, keep_cache=True)
        assert cache is not None
        self.tokens_done += len(ids) - start
        known = dict(parent.known)
        for j, t in enumerate(wanted):
            known[t] = torch.stack([captured[layer][j].to(self.device) for layer in self.layers])
        kv = from_cache(cache, self.deepest + 1)
        return Prefix(len(ids), kv, known)

    def _inputs(
        self, batch: list[Item], start: int
    ) -> tuple[torch.Tensor, torch.Tensor, list[int] | None, list[int]]:
        """Token ids, positions, segment lengths (packed) and each sample's offset in the flattened output."""
        device, lens = self.device, [len(it.ids) - start for it in batch]
        if self.packed:
            ids = torch.cat([_as_ids(it.ids[start:]) for it in batch])[None]
            positions = torch.cat([torch.arange(start, start + n) for n in lens])[None].to(device)
            offsets = [sum(lens[:r]) for r in range(len(batch))]
            return ids.to(device), positions, lens, offsets
        width = max(lens)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        for r, it in enumerate(batch):
            ids[r, : lens[r]] = _as_ids(it.ids[start:])
        positions = torch.arange(start, start + width, device=device)[None].expand(len(batch), -1)
        return ids.to(device), positions, None, [r * width for r in range(len(batch))]

    @torch.inference_mode()
    def _forward_batch(self, batch: list[Item], prefix: Prefix) -> BatchResult:
        """Run the suffixes of `batch`; positions inside the prefix come from `prefix.known`."""
        device, start = self.device, prefix.length
        ids, positions, segments, offsets = self._inputs(batch, start)
        in_suffix = [
            (r, p, offsets[r] + t - start)
            for r, it in enumerate(batch)
            for p, t in enumerate(it.token_indices)
            if t >= start
        ]
        index = torch.tensor([x[2] for x in in_suffix], dtype=torch.long, device=device)
        captured, _ = self._forward(ids, positions, prefix, index, segments)
        self.tokens_done += sum(len(it.ids) - start for it in batch)
        out = torch.empty(
            len(batch),
            len(self.layers),
            len(batch[0].token_indices),
            self.hidden,
            device=device,
            dtype=self.model.dtype,
        )
        # layers may sit on several GPUs
        if in_suffix:
            rows, cols = [x[0] for x in in_suffix], [x[1] for x in in_suffix]
            out[rows, :, cols] = torch.stack(
                [captured[layer].to(device) for layer in self.layers], dim=1
            )
        for r, it in enumerate(batch):
            for p, t in enumerate(it.token_indices):
                if t < start:
                    out[r, :, p] = prefix.known[t]
        return BatchResult([it.idx for it in batch], out.float().cpu())
