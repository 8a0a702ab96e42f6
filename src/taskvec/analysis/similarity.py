"""Similarity measures that separate prompting strategies where the raw cosine of means cannot.

Residual-stream vectors share a large mean direction, so the raw cosine of two task vectors is
close to 1 whatever the strategies do. Per pair of sessions at one key:
- `cos_centered`: cosine after subtracting the grand mean (the mean of the compared sessions'
  task vectors), so only what differs between sessions is compared (with exactly two sessions
  the two centred means are opposite, so this is -1 by construction: read the next one);
- `samples_cos_centered`: the same for each of a's samples against b's centred task vector,
  averaged (next to `own_cos_centered`, against a's own): near 0 when the sessions do not differ;
- `distance_spread`: the distance between the task vectors in units of the within-session
  spread (pooled root-mean-square distance of samples to their own session's mean);
- `cka`: linear CKA between the two sessions' vectors of the same samples (rows matched by id);
- `probe_auc`: a cross-validated probe that tells from one sample vector which session it is from;
- bootstrap intervals over samples (resampled within each session) for both cosines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from taskvec.analysis.probe import cross_validate

BOOTSTRAP = 200
LEVEL = 0.95
MIN_CKA_SAMPLES = 3


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm else math.nan


def centered_cosines(means: Sequence[np.ndarray]) -> np.ndarray:
    """(n, n) cosine of the task vectors after subtracting their grand mean (equal weight per session)."""
    grand = np.mean(means, axis=0)
    centred = [m - grand for m in means]
    return np.array([[cosine(a, b) for b in centred] for a in centred])


def spread(vectors: Sequence[np.ndarray]) -> float:
    """Pooled within-session spread: sqrt(sum of squared distances to the own mean / (N - sessions))."""
    squares = sum(float(((v - v.mean(0)) ** 2).sum()) for v in vectors)
    dof = sum(len(v) for v in vectors) - len(vectors)
    return math.sqrt(squares / dof) if dof > 0 else math.nan


def distance_in_spread(a: np.ndarray, b: np.ndarray) -> float:
    """|mean(a) - mean(b)| over the pooled within-session spread of a and b (samples as rows); NaN where the
    samples do not spread (every prompt has the same token there, as at position `first`)."""
    pooled = spread([a, b])
    return float(np.linalg.norm(a.mean(0) - b.mean(0))) / pooled if pooled > 0 else math.nan


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) of two representations of the same n samples (rows),
    through n x n Gram matrices."""
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same samples: {len(x)} rows against {len(y)}")
    xc, yc = x - x.mean(0), y - y.mean(0)
    kx, ky = xc @ xc.T, yc @ yc.T
    hsic = float((kx * ky).sum())
    norm = math.sqrt(float((kx * kx).sum()) * float((ky * ky).sum()))
    return hsic / norm if norm else math.nan


def samples_centered(vectors: np.ndarray, grand: np.ndarray, mean: np.ndarray) -> float:
    """Mean cosine of the centred samples (rows) to a centred task vector."""
    x, m = vectors - grand, mean - grand
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(m)
    return float(np.mean((x @ m) / np.where(norms > 0, norms, np.nan)))


def _interval(values: list[float]) -> tuple[float, float]:
    if all(math.isnan(v) for v in values):
        return math.nan, math.nan
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.nanpercentile(values, (tail, 100 - tail))
    return float(lo), float(hi)


def bootstrap_cosines(
    vectors: Sequence[np.ndarray], i: int, j: int, repeats: int = BOOTSTRAP, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Percentile intervals (LEVEL) of the raw and the centred cosine of sessions i and j and of i's samples'
    centred cosine to j, resampling the samples of every compared session (the grand mean moves with them)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {"cos_means": [], "cos_centered": [], "samples_cos_centered": []}
    for _ in range(repeats):
        picks = [v[rng.integers(0, len(v), len(v))] for v in vectors]
        means = [p.mean(0) for p in picks]
        grand = np.mean(means, axis=0)
        out["cos_means"].append(cosine(means[i], means[j]))
        out["cos_centered"].append(cosine(means[i] - grand, means[j] - grand))
        out["samples_cos_centered"].append(samples_centered(picks[i], grand, means[j]))
    return {name: _interval(values) for name, values in out.items()}


def strategy_probe(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Cross-validated AUC (mean, std over folds) and accuracy of a probe telling b's samples from a's."""
    x = np.concatenate([a, b])
    y = np.concatenate([np.zeros(len(a), int), np.ones(len(b), int)])
    score = cross_validate(x, y)
    return score.auc, score.auc_std, score.accuracy


def paired_rows(ids_a: Sequence[str], ids_b: Sequence[str]) -> tuple[list[int], list[int]]:
    """Row indices of the samples both sessions have, in a's order (for CKA on the same samples)."""
    where_b = {sid: r for r, sid in enumerate(ids_b)}
    shared = [(r, where_b[sid]) for r, sid in enumerate(ids_a) if sid in where_b]
    return [r for r, _ in shared], [r for _, r in shared]


def pair_measures(
    vectors: Sequence[np.ndarray], ids: Sequence[Sequence[str]], i: int, j: int
) -> dict[str, float]:
    """Every measure of the module for sessions i and j at one key (all compared sessions' vectors given)."""
    a, b = vectors[i], vectors[j]
    means = [v.mean(0) for v in vectors]
    grand = np.mean(means, axis=0)
    intervals = bootstrap_cosines(vectors, i, j)
    rows_a, rows_b = paired_rows(ids[i], ids[j])
    cka = linear_cka(a[rows_a], b[rows_b]) if len(rows_a) >= MIN_CKA_SAMPLES else math.nan
    probe_auc, probe_auc_std, probe_acc = strategy_probe(a, b)
    return {
        "cos_means_lo": intervals["cos_means"][0],
        "cos_means_hi": intervals["cos_means"][1],
        "cos_centered": cosine(means[i] - grand, means[j] - grand),
        "cos_centered_lo": intervals["cos_centered"][0],
        "cos_centered_hi": intervals["cos_centered"][1],
        "samples_cos_centered": samples_centered(a, grand, means[j]),
        "samples_cos_centered_lo": intervals["samples_cos_centered"][0],
        "samples_cos_centered_hi": intervals["samples_cos_centered"][1],
        "own_cos_centered": samples_centered(a, grand, means[i]),
        "distance_spread": distance_in_spread(a, b),
        "cka": cka,
        "n_cka": len(rows_a),
        "probe_auc": probe_auc,
        "probe_auc_std": probe_auc_std,
        "probe_acc": probe_acc,
    }
