"""Running statistics equal torch.mean / torch.std of the stacked samples, in any partition."""

from __future__ import annotations

import torch

from taskvec.session.stats import RunningStats


def test_matches_torch_over_uneven_blocks() -> None:
    g = torch.Generator().manual_seed(0)
    # large offset: naive sum-of-squares would lose digits
    data = torch.randn(53, 16, generator=g) * 1e3 + 5e4
    stats = RunningStats(16)
    for start, stop in [(0, 1), (1, 20), (20, 21), (21, 53)]:
        stats.update(data[start:stop])
    assert stats.count == 53
    torch.testing.assert_close(stats.mean, data.double().mean(0), rtol=1e-12, atol=0)
    torch.testing.assert_close(stats.std(), data.double().std(0), rtol=1e-10, atol=0)


def test_merge_equals_single_pass() -> None:
    data = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    left, right, whole = RunningStats(8), RunningStats(8), RunningStats(8)
    left.update(data[:13])
    right.update(data[13:])
    whole.update(data)
    left.merge(right)
    torch.testing.assert_close(left.mean, whole.mean)
    torch.testing.assert_close(left.std(), whole.std())


def test_single_sample_std_is_nan_like_torch() -> None:
    stats = RunningStats(3)
    stats.update(torch.ones(1, 3))
    assert torch.isnan(stats.std()).all() and torch.isnan(torch.ones(1, 3).std(0)).all()
