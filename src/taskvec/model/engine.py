"""The extraction forward loop: shared-prefix KV reuse, length-sorted suffix batches, on-device
gathering."""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass

import torch
from transformers import PretrainedConfig, PreTrainedModel

from taskvec.model.attention import can_share_prefix, use_shared_prefix_attention
from taskvec.model.capture import StopForward, capture, decoder_blocks
from taskvec.model.kvcache import cache_kw, to_cache
from taskvec.model.prefill import Ids, Prefix, PrefixCache, PrefixForward, node_batches, plan
from taskvec.model.prefix import PrefixNode
from taskvec.model.ragged import Ragged, packed, right_padded
from taskvec.prompts.item import Item


@dataclass(frozen=True)
class BatchResult:
    """Vectors for a batch: `vectors[i]` is (n_layers, n_positions, hidden) float32 on CPU."""

    idxs: list[int]
    vectors: torch.Tensor


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
    (`attention.py`; an `sdpa` model runs it while `run` goes on) every suffix token
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
        self.prefix_forward = PrefixForward(model, layers, self.deepest)
        # batches read the prefix once instead of a copy per row (where the attention can)
        self.shared = can_share_prefix(model)
        # tokens run through the model so far (prefixes and suffixes): the progress bar's unit
        self.tokens_done = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def plan(self, items: Sequence[Item]) -> PrefixNode:
        """The prefix tree over `items` (positions into it); a bare root when prefix reuse is off."""
        return plan([it.ids for it in items], self.prefix_cache)

    def run(
        self, items: Sequence[Item], tree: PrefixNode | None = None, done: Set[int] = frozenset()
    ) -> Iterator[BatchResult]:
        """Yield results batch by batch (order follows the plan, `tree` or `plan(items)`, not the input).

        Batches whose items are all in `done` (item idx) are skipped; the others run
        exactly as in a full run, so a resumed run reproduces its vectors bit for bit.
        """
        tree = tree or self.plan(items)
        batches = self._batches(items, tree, done)
        prefixes = PrefixCache(
            tree,
            [it.ids for it in items],
            self._extend,
            {m for _, batch in batches for m in batch},
            lambda m: items[m].token_indices,
        )
        with use_shared_prefix_attention(self.model) as switched:
            for batch, prefix in prefixes.batches(batches):
                yield self._forward_batch(
                    [items[m] for m in batch], prefix, self.shared and switched
                )

    def _batches(
        self, items: Sequence[Item], tree: PrefixNode, done: Set[int]
    ) -> list[tuple[PrefixNode, list[int]]]:
        """The suffix batches a run runs (positions into `items`) with their nodes, in plan order:
        all but those whose items are all in `done`."""
        lengths = [len(it.ids) for it in items]
        return [
            (node, batch)
            for node, batch in node_batches(
                tree, lengths, self.max_batch_tokens, self.batch_size, self.packed
            )
            if not all(items[m].idx in done for m in batch)
        ]

    def work(self, items: Sequence[Item], tree: PrefixNode, done: Set[int] = frozenset()) -> int:
        """Tokens `run(items, tree, done)` will compute: the honest measure of how long it takes."""
        batches = self._batches(items, tree, done)
        suffixes = sum(len(items[m].ids) - node.prefix_len for node, b in batches for m in b)
        return suffixes + _extensions(tree, {id(node) for node, _ in batches})

    def schedule(self, items: Sequence[Item], tree: PrefixNode) -> list[list[int]]:
        """The batches `run(items, tree)` forms, as item idxs, in the order it runs them."""
        return [[items[m].idx for m in batch] for _, batch in self._batches(items, tree, set())]

    def _forward(
        self,
        inputs: Ragged,
        prefix: Prefix,
        index: torch.Tensor,
        shared: bool,
    ) -> dict[int, torch.Tensor]:
        """One causal forward of the base model on top of `prefix`, stopped after the deepest block.

        With `shared` (the `taskvec` attention) batches attend to the prefix's one copy
        (`shared_prefix`, no cache), packed ones within each segment only; otherwise the prefix is
        the cache, expanded over the batch, and packed segments are kept apart by a block-diagonal
        mask."""
        kwargs: dict[str, object] = {}
        mask, segments = None, inputs.lens if self.packed else None
        if shared:
            kwargs.update(shared_prefix=prefix.kv, segments=segments)
        else:
            if segments is not None:
                mask = packed_mask(segments, prefix.length, self.model.dtype, self.device)
            if prefix.kv is not None:
                kwargs[self.cache_kw] = to_cache(prefix.kv, inputs.ids.shape[0])
        with capture(self.blocks, self.layers, index, self.deepest) as captured:
            try:
                self.base(
                    input_ids=inputs.ids.to(self.device),
                    attention_mask=mask,
                    position_ids=inputs.positions.to(self.device),
                    use_cache=self.cache_kw in kwargs,
                    **kwargs,
                )
            except StopForward:
                pass
        return captured

    def _extend(self, parent: Prefix, ids: Ids, wanted: list[int]) -> Prefix:
        """`parent` extended by `ids`, with the vectors of `wanted` positions among them."""
        self.tokens_done += len(ids)
        return self.prefix_forward(parent, ids, wanted)

    @torch.inference_mode()
    def _forward_batch(self, batch: list[Item], prefix: Prefix, shared: bool) -> BatchResult:
        """Run the suffixes of `batch`; positions inside the prefix come from `prefix.known`."""
        device, start = self.device, prefix.length
        suffixes = [it.ids[start:] for it in batch]
        inputs = packed(suffixes, start) if self.packed else right_padded(suffixes, start)
        in_suffix = [
            (r, p, inputs.first[r] + t - start)
            for r, it in enumerate(batch)
            for p, t in enumerate(it.token_indices)
            if t >= start
        ]
        index = torch.tensor([x[2] for x in in_suffix], dtype=torch.long, device=device)
        captured = self._forward(inputs, prefix, index, shared)
        self.tokens_done += sum(inputs.lens)
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


def _extensions(node: PrefixNode, running: Set[int], parent_len: int = 0) -> int:
    """Prefix tokens a run computes under `node`: each extension with a batch to run at or below
    its node."""
    if not any(id(n) in running for n in node.walk()):
        return 0
    below = sum(_extensions(child, running, node.prefix_len) for child in node.children)
    return node.prefix_len - parent_len + below
