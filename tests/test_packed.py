"""oneDNN-prepacked linears: the same products, only while the block runs; growing KV caches
append in place."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from taskvec.model.kvcache import add_rows, from_cache, growing_cache, keep_rows
from taskvec.model.packed import packable, packed_linears
from tests.tiny import make_model


def test_packed_linears_give_the_same_logits_and_are_undone() -> None:
    model = make_model("qwen2", n_layers=2)
    ids = torch.randint(3, 400, (3, 17), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        plain = model(input_ids=ids).logits
        linears = [m for m in model.modules() if type(m) is nn.Linear]
        with packed_linears(model) as n:
            assert n == len(linears) > 0 and all("forward" in m.__dict__ for m in linears)
            packed = model(input_ids=ids).logits
        assert all("forward" not in m.__dict__ for m in linears)
        torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)


def test_packing_is_undone_after_an_error_and_skips_other_dtypes() -> None:
    model = make_model("llama", n_layers=1)
    with pytest.raises(KeyboardInterrupt), packed_linears(model):
        raise KeyboardInterrupt
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert packable(model.to(torch.bfloat16)) == []


def test_growing_cache_appends_in_place_and_keeps_rows() -> None:
    g = torch.Generator().manual_seed(0)
    keys, values = torch.randn(3, 2, 5, 4, generator=g), torch.randn(3, 2, 5, 4, generator=g)
    cache = growing_cache([(keys, values)], room=4)
    layer = cache.layers[0]
    buffer = layer.buffers[0].data_ptr()  # type: ignore[attr-defined]
    steps = [
        (torch.randn(3, 2, n, 4, generator=g), torch.randn(3, 2, n, 4, generator=g))
        for n in (1, 3, 2)
    ]
    for k, v in steps[:2]:
        cache.update(k, v, 0)
    assert layer.buffers[0].data_ptr() == buffer  # type: ignore[attr-defined]  # within the room: no copy
    cache.update(*steps[2], 0)  # past the room: new buffers, same contents
    want_k = torch.cat([keys, *(k for k, _ in steps)], dim=2)
    want_v = torch.cat([values, *(v for _, v in steps)], dim=2)
    ((got_k, got_v),) = from_cache(cache)
    assert (
        torch.equal(got_k, want_k) and torch.equal(got_v, want_v) and cache.get_seq_length() == 11
    )
    keep_rows(cache, [2, 0], front=3)
    ((got_k, got_v),) = from_cache(cache)
    assert torch.equal(got_k, want_k[[2, 0], :, 3:]) and torch.equal(got_v, want_v[[2, 0], :, 3:])
    cache.update(*(t[:2, :, :1] for t in steps[0]), 0)
    assert cache.get_seq_length() == 9 and torch.equal(
        from_cache(cache)[0][0][:, :, -1:], steps[0][0][:2, :, :1]
    )


def test_growing_cache_adds_rows_right_aligned_and_moves_only_the_rows_that_change_place() -> None:
    g = torch.Generator().manual_seed(1)
    kv = [tuple(torch.randn(2, 2, 4, 3, generator=g) for _ in range(2))]
    cache = growing_cache(kv, room=2, rows=3)  # type: ignore[arg-type]
    layer = cache.layers[0]
    narrow = [tuple(torch.randn(1, 2, 3, 3, generator=g) for _ in range(2))]
    add_rows(cache, narrow)  # type: ignore[arg-type]  # a spare row: written in place
    assert layer.buffers[0].shape[0] == 3  # type: ignore[attr-defined]
    ((k, v),) = from_cache(cache)
    assert k.shape == (3, 2, 4, 3) and torch.equal(k[2, :, 1:], narrow[0][0][0])
    wide = [tuple(torch.randn(1, 2, 6, 3, generator=g) for _ in range(2))]
    add_rows(cache, wide)  # type: ignore[arg-type]  # a fourth row, wider: the window grows in front
    ((k, v),) = from_cache(cache)
    assert k.shape == (4, 2, 6, 3) and torch.equal(v[3], wide[0][1][0])
    assert torch.equal(k[:2, :, 2:], kv[0][0]) and torch.equal(k[2, :, 3:], narrow[0][0][0])
    before = k.clone()
    keep_rows(cache, [3, 1], front=1)  # row 0 finished, row 2 too: row 3 takes row 0's place
    ((k, _),) = from_cache(cache)
    assert torch.equal(k, before[[3, 1], :, 1:])


def test_growing_cache_slides_its_window_back_in_place_and_adds_repeated_rows() -> None:
    g = torch.Generator().manual_seed(2)
    distinct = [tuple(torch.randn(2, 2, 3, 4, generator=g) for _ in range(2))]
    cache = growing_cache(distinct, room=4, rows=6, index=[1, 1, 1, 0])  # type: ignore[arg-type]
    layer = cache.layers[0]
    ((k, v),) = from_cache(cache)
    assert torch.equal(k, distinct[0][0][[1, 1, 1, 0]]) and torch.equal(v[3], distinct[0][1][0])
    steps = [tuple(torch.randn(4, 2, n, 4, generator=g) for _ in range(2)) for n in (2, 3)]
    cache.update(*steps[0], 0)  # 5 of the 7 columns
    keep_rows(cache, [3, 1, 2], front=4)  # the window: 1 column
    buffer = layer.buffers[0].data_ptr()  # type: ignore[attr-defined]
    cache.update(*(t[[3, 1, 2]] for t in steps[1]), 0)  # past the room: the window moves back
    assert layer.buffers[0].data_ptr() == buffer and layer.front == 0  # type: ignore[attr-defined]
    want = torch.cat([steps[0][0][[3, 1, 2], :, -1:], steps[1][0][[3, 1, 2]]], dim=2)
    assert torch.equal(from_cache(cache)[0][0], want)
    add_rows(cache, distinct, [0, 1])  # type: ignore[arg-type]  # spare rows, right-aligned
    ((k, _),) = from_cache(cache)
    assert k.shape == (5, 2, 4, 4) and torch.equal(k[3:, :, 1:], distinct[0][0][[0, 1]])
    assert torch.equal(k[:3], want)
    cache.update(*(torch.randn(5, 2, 3, 4, generator=g) for _ in range(2)), 0)  # 7 of 7 columns
    keep_rows(cache, [4, 0, 1, 2, 3], front=2)  # a window of 5 behind 2 free columns
    before = [t.clone() for t in from_cache(cache)[0]]
    last = [torch.randn(5, 2, 2, 4, generator=g) for _ in range(2)]
    cache.update(*last, 0)  # moves back in chunks of 2 columns over itself
    assert layer.buffers[0].data_ptr() == buffer and layer.front == 0  # type: ignore[attr-defined]
    for got, old, new in zip(from_cache(cache)[0], before, last):
        assert torch.equal(got, torch.cat([old, new], dim=2))


def test_joining_rows_take_finished_rows_places() -> None:
    g = torch.Generator().manual_seed(3)
    kv = [tuple(torch.randn(4, 2, 3, 4, generator=g) for _ in range(2))]
    cache = growing_cache(kv, room=2, rows=6)  # type: ignore[arg-type]
    before = from_cache(cache)[0][0].clone()
    new = [tuple(torch.randn(2, 2, 2, 4, generator=g) for _ in range(2))]
    add_rows(cache, new, [1, 1, 0], [1, 3, 4])  # type: ignore[arg-type]  # rows 1 and 3 finished
    ((k, _),) = from_cache(cache)
    assert k.shape == (5, 2, 3, 4)
    assert torch.equal(k[[0, 2]], before[[0, 2]])  # the others stay where they are
    assert torch.equal(k[[1, 3, 4], :, 1:], new[0][0][[1, 1, 0]])
