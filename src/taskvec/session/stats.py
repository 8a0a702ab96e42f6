"""Mergeable running mean and standard deviation (Chan et al.), accumulated in float64."""

from __future__ import annotations

import torch


class RunningStats:
    """Mean and sample std (correction=1) over rows, mergeable across partitions."""

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.mean = torch.zeros(dim, dtype=torch.float64)
        self.m2 = torch.zeros(dim, dtype=torch.float64)

    def update(self, rows: torch.Tensor) -> None:
        """Add a (n, dim) block of samples."""
        block = rows.detach().to("cpu", torch.float64).reshape(-1, self.mean.numel())
        n = block.shape[0]
        if n == 0:
            return
        mean = block.mean(dim=0)
        m2 = ((block - mean) ** 2).sum(dim=0)
        self._combine(n, mean, m2)

    def merge(self, other: RunningStats) -> None:
        """Fold another accumulator in, as if its samples had been added here."""
        if other.count:
            self._combine(other.count, other.mean, other.m2)

    def _combine(self, n: int, mean: torch.Tensor, m2: torch.Tensor) -> None:
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    def std(self) -> torch.Tensor:
        """Sample standard deviation; NaN for fewer than two samples, as torch.std."""
        if self.count < 2:
            return torch.full_like(self.mean, float("nan"))
        return (self.m2 / (self.count - 1)).sqrt()
