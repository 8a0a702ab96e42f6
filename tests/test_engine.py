"""The engine's vectors equal an independent plain forward, whatever the batching path."""

from __future__ import annotations

import pytest
import torch

from taskvec.model.capture import decoder_blocks
from taskvec.model.engine import Extractor
from taskvec.model.prefill import make_batches
from taskvec.model.prefix import plan_prefix_tree
from taskvec.prompts.item import Item
from tests.tiny import make_model

N_LAYERS = 4


def _items(seed: int = 0, shared: int = 40) -> list[Item]:
    """Prompts that mostly share a prefix, a few that share less, varied lengths."""
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(0, 400, (shared,), generator=g).tolist()
    items = []
    for i in range(9):
        head = prefix if i < 6 else prefix[: shared // 3] if i < 8 else []
        ids = head + torch.randint(0, 400, (4 + 3 * i,), generator=g).tolist()
        items.append(Item(i, ids, [len(ids) - 1, len(ids) - 2, 2 if i == 4 else len(ids) - 3]))
    return items


def _reference(model: torch.nn.Module, item: Item, layers: list[int]) -> torch.Tensor:
    """(n_layers, n_positions, hidden) from one unbatched forward: HF hidden_states below the
    last block, a hook on the last block's output (HF's last entry has the final norm)."""
    grabbed: dict[str, torch.Tensor] = {}
    last = decoder_blocks(model)[-1]
    handle = last.register_forward_hook(
        lambda m, a, out: grabbed.__setitem__("h", out[0] if isinstance(out, tuple) else out)
    )
    try:
        with torch.no_grad():
            out = model(torch.tensor([list(item.ids)]), output_hidden_states=True)
    finally:
        handle.remove()
    rows = []
    for layer in layers:
        h = grabbed["h"] if layer == N_LAYERS - 1 else out.hidden_states[layer + 1]
        rows.append(h[0, list(item.token_indices)])
    return torch.stack(rows)


def _run(
    model: torch.nn.Module, items: list[Item], layers: list[int], **kw: object
) -> dict[int, torch.Tensor]:
    ex = Extractor(model, layers, **kw)  # type: ignore[arg-type]
    return {i: v for batch in ex.run(items) for i, v in zip(batch.idxs, batch.vectors)}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("family", ["qwen2", "llama"])
@pytest.mark.parametrize("prefix_cache", [True, False])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize("budget,batch", [(10_000, 64), (30, 3), (1, 1)])
def test_matches_plain_forward(
    family: str, prefix_cache: bool, packed: bool, budget: int, batch: int
) -> None:
    model = make_model(family, N_LAYERS)
    items = _items()
    layers = [0, 2, N_LAYERS - 1]
    got = _run(
        model,
        items,
        layers,
        max_batch_tokens=budget,
        batch_size=batch,
        prefix_cache=prefix_cache,
        packed=packed,
    )
    assert sorted(got) == [it.idx for it in items]
    for item in items:
        ref = _reference(model, item, layers)
        assert got[item.idx].shape == ref.shape
        assert got[item.idx].dtype == torch.float32
        assert _rel(got[item.idx], ref) < 1e-5


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "padded"])
def test_without_shared_prefix_attention_the_cache_path_matches(packed: bool) -> None:
    """An eager model cannot take `shared_prefix`: the prefix cache is expanded per row (or
    masked, packed) instead."""
    model = make_model("llama", N_LAYERS)
    model.set_attn_implementation("eager")
    items, layers = _items(), [0, 2, N_LAYERS - 1]
    engine = Extractor(model, layers, 30, 3, True, packed)
    assert not engine.shared
    got = {i: v for batch in engine.run(items) for i, v in zip(batch.idxs, batch.vectors)}
    for item in items:
        assert _rel(got[item.idx], _reference(model, item, layers)) < 1e-5


def test_prefix_tree_shares() -> None:
    items = _items()
    tree = Extractor(make_model("qwen2", N_LAYERS), [1], 100, 8, True).plan(items)
    nodes = list(tree.walk())
    assert sorted(m for n in nodes for m in n.members) == list(range(len(items)))
    assert max(n.prefix_len for n in nodes) == 40  # the six prompts with the full shared prefix
    for node in nodes:  # every member really shares its node's prefix and keeps a suffix to run
        for m in node.members:
            assert list(items[m].ids[: node.prefix_len]) == list(
                items[node.members[0]].ids[: node.prefix_len]
            )
            assert node.prefix_len < len(items[m].ids)
    lengths = [len(it.ids) for it in items]
    assert tree.tokens_computed(lengths) < sum(lengths)


def test_nested_prefixes_like_first_k_demonstrations() -> None:
    """Queries among the first k see other demonstrations: a nested tree still shares most tokens."""
    g = torch.Generator().manual_seed(5)
    demo = [torch.randint(0, 400, (30,), generator=g).tolist() for _ in range(6)]
    system = torch.randint(0, 400, (20,), generator=g).tolist()
    seqs = []
    for q in range(12):
        chosen = [d for i, d in enumerate(demo) if i != q][:5]
        seqs.append(system + sum(chosen, []) + torch.randint(0, 400, (10,), generator=g).tolist())
    tree = plan_prefix_tree(seqs, [len(s) - 1 for s in seqs])
    lengths = [len(s) for s in seqs]
    assert max(n.prefix_len for n in tree.walk()) == 170
    # 20 system + 5 demo blocks of 30, run once per distinct path, plus the suffixes
    assert tree.tokens_computed(lengths) <= 170 + 12 * 11 + 4 * 150


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_hf_batch_reads_the_same_tokens(side: str) -> None:
    """Positions index the unpadded prompt: a padded HF batch, shifted by its padding, agrees."""
    model = make_model("llama", N_LAYERS)
    items = _items(seed=3)
    got = _run(model, items, [1], max_batch_tokens=64, batch_size=4, prefix_cache=True)
    width = max(len(it.ids) for it in items)
    ids = torch.zeros(len(items), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, it in enumerate(items):
        n = len(it.ids)
        cols = slice(width - n, width) if side == "left" else slice(0, n)
        ids[r, cols], mask[r, cols] = torch.tensor(list(it.ids)), 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        hs = model(
            ids, attention_mask=mask, position_ids=positions, output_hidden_states=True
        ).hidden_states[2]
    for r, it in enumerate(items):
        shift = width - len(it.ids) if side == "left" else 0
        ref = hs[r, [shift + t for t in it.token_indices]]
        assert _rel(got[it.idx][0], ref) < 1e-5


def test_early_stop_skips_later_blocks() -> None:
    model = make_model("qwen2", N_LAYERS)
    calls: list[int] = []
    blocks = decoder_blocks(model)
    handles = [
        b.register_forward_pre_hook(lambda m, a, i=i: calls.append(i)) for i, b in enumerate(blocks)
    ]
    try:
        _run(model, _items()[:2], [1], max_batch_tokens=1000, batch_size=8, prefix_cache=False)
    finally:
        for h in handles:
            h.remove()
    assert set(calls) == {0, 1}
    assert all(not b._forward_hooks for b in blocks), "capture hooks must be removed"


@pytest.mark.parametrize("packed", [True, False])
def test_batches_are_length_sorted_and_within_budget(packed: bool) -> None:
    lengths = {i: n for i, n in enumerate([5, 9, 3, 7, 2, 8, 1])}
    batches = make_batches(lengths, max_tokens=20, max_samples=3, packed=packed)
    assert sorted(i for b in batches for i in b) == list(lengths)
    assert [lengths[b[0]] for b in batches] == sorted(
        (lengths[b[0]] for b in batches), reverse=True
    )
    for batch in batches:
        cost = (
            sum(lengths[i] for i in batch)
            if packed
            else len(batch) * max(lengths[i] for i in batch)
        )
        assert len(batch) <= 3 and (cost <= 20 or len(batch) == 1)
    expected = [[9, 8], [7, 5, 3], [2, 1]] if packed else [[9, 8], [7, 5], [3, 2, 1]]
    assert [[lengths[i] for i in b] for b in batches] == expected
