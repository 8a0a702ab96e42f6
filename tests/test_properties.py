"""Property tests: position resolution for any length, spec and padding side; statistics for any partition."""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from taskvec.errors import TaskvecError
from taskvec.model.engine import Extractor
from taskvec.positions import resolve_position
from taskvec.prompts.item import Item
from taskvec.session.stats import RunningStats
from tests.tiny import make_model

specs = st.one_of(st.sampled_from(["last", "first"]), st.integers(-300, 300))


@given(n=st.integers(1, 256), spec=specs)
def test_resolve_position_is_python_indexing(n: int, spec: int | str) -> None:
    """'last' = n-1, 'first' = 0, k = k and -k = n-k when in range; otherwise an error naming
    sample, length and spec."""
    expected = {"last": -1, "first": 0}.get(spec, spec) if isinstance(spec, str) else spec
    if -n <= expected < n:
        assert resolve_position(spec, n, "s") == range(n)[expected]
    else:
        with pytest.raises(
            TaskvecError, match=f"position {spec} is out of range for sample 's' with {n} tokens"
        ):
            resolve_position(spec, n, "s")


@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=6), spec=specs, left=st.booleans())
def test_padding_side_never_changes_the_token_read(
    lengths: list[int], spec: int | str, left: bool
) -> None:
    """In a padded batch, the resolved index shifted by the row's padding reads the same token as
    the unpadded prompt."""
    width = max(lengths)
    # every token distinct
    rows = [torch.arange(1, n + 1) * 1000 + r for r, n in enumerate(lengths)]
    batch = torch.zeros(len(lengths), width, dtype=torch.long)
    for r, (row, n) in enumerate(zip(rows, lengths)):
        (batch[r, width - n :] if left else batch[r, :n]).copy_(row)
    for r, (row, n) in enumerate(zip(rows, lengths)):
        try:
            index = resolve_position(spec, n, f"s{r}")
        except TaskvecError:
            continue
        pad = width - n if left else 0
        assert batch[r, index + pad] == row[index] != 0


@functools.cache
def _model() -> torch.nn.Module:
    return make_model("qwen2", 3)


@settings(max_examples=12, deadline=None)
@given(
    lengths=st.lists(st.integers(2, 30), min_size=1, max_size=5),
    shared=st.integers(0, 20),
    position=st.integers(-2, 1),
    packed=st.booleans(),
)
def test_engine_reads_the_same_token_alone_or_batched(
    lengths: list[int], shared: int, position: int, packed: bool
) -> None:
    """Any mix of lengths, shared prefix and position: batched (packed or padded, prefix reused)
    equals one at a time."""
    g = torch.Generator().manual_seed(sum(lengths) + shared)
    prefix = torch.randint(0, 400, (shared,), generator=g).tolist()
    items = []
    for i, n in enumerate(lengths):
        ids = prefix + torch.randint(0, 400, (n,), generator=g).tolist()
        items.append(Item(i, ids, [resolve_position(position, len(ids), str(i)), len(ids) - 1]))
    model = _model()
    batched = Extractor(model, [0, 2], 10_000, 64, prefix_cache=True, packed=packed)
    alone = Extractor(model, [0, 2], 1, 1, prefix_cache=False, packed=False)
    got = {i: v for b in batched.run(items) for i, v in zip(b.idxs, b.vectors)}
    want = {i: v for b in alone.run(items) for i, v in zip(b.idxs, b.vectors)}
    for i in want:
        torch.testing.assert_close(got[i], want[i], rtol=1e-4, atol=1e-5)


@given(
    n=st.integers(2, 60),
    cuts=st.lists(st.integers(1, 59), max_size=8),
    scale=st.sampled_from([1e-3, 1.0, 1e4]),
    offset=st.sampled_from([0.0, 5e4]),
    seed=st.integers(0, 2**16),
)
def test_any_partition_merges_to_one_pass(
    n: int, cuts: list[int], scale: float, offset: float, seed: int
) -> None:
    """Blocks updated separately and merged give torch's mean and std (correction=1) of the whole."""
    data = (
        torch.randn(n, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        * scale
        + offset
    )
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    total = RunningStats(5)
    for start, stop in zip(bounds, bounds[1:]):
        part = RunningStats(5)
        part.update(data[start:stop])
        total.merge(part)
    assert total.count == n
    # float64 rounding grows with how far the data sit from zero relative to their spread
    condition = 1 + offset / scale
    torch.testing.assert_close(total.mean, data.mean(0), rtol=1e-13 * condition, atol=1e-12 * scale)
    torch.testing.assert_close(total.std(), data.std(0), rtol=1e-10 + 1e-13 * condition, atol=0)
