"""A cross-validated linear probe and the controls that say whether its score means anything.

The probe is a standardised logistic regression scored by stratified k-fold cross-validation
(accuracy and ROC AUC, mean and spread over folds, plus each sample's out-of-fold score).
Controls: the majority-class baseline, a permutation test (the same probe on shuffled labels,
repeated with seeded shuffles: p = (1 + #{shuffled AUC >= AUC}) / (1 + repeats)), and any
baseline probe on other features (prompt length, question kind) run the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

MAX_FOLDS = 5
ALPHA = 0.05


@dataclass(frozen=True)
class ProbeScore:
    """Cross-validated scores of one probe; NaN (and folds 0) when a class has fewer than two samples."""

    accuracy: float
    accuracy_std: float
    auc: float
    auc_std: float
    folds: int
    oof: np.ndarray  # out-of-fold decision value of each sample (NaN when not run)


def n_folds(y: np.ndarray) -> int:
    """Stratified folds the labels allow: at most MAX_FOLDS and the smaller class's size (< 2: none)."""
    smaller = int(np.bincount(y, minlength=2).min())
    return min(MAX_FOLDS, smaller) if smaller >= 2 else 0


def _fit_score(x: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Standardise on the training rows, fit L2 logistic regression (liblinear: fast on few
    samples), score `test`."""
    mean, std = x.mean(0), x.std(0)
    std[std == 0] = 1.0
    model = LogisticRegression(solver="liblinear").fit((x - mean) / std, y)
    return ((test - mean) / std) @ model.coef_[0] + model.intercept_[0]


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties counted half."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return math.nan
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def cross_validate(x: np.ndarray, y: np.ndarray, seed: int = 0) -> ProbeScore:
    """Stratified k-fold accuracy and ROC AUC of a linear probe predicting `y` (0/1) from `x` (n, d).

    The AUC is that of the pooled out-of-fold scores (steadier than a mean over folds of a few samples
    each); its spread is the std of the per-fold AUCs."""
    folds = n_folds(y)
    oof = np.full(len(y), np.nan)
    if folds == 0:
        return ProbeScore(math.nan, math.nan, math.nan, math.nan, 0, oof)
    accs, aucs = [], []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        score = _fit_score(x[train], y[train], x[test])
        oof[test] = score
        accs.append(float(((score > 0).astype(int) == y[test]).mean()))
        aucs.append(auc(y[test], score))
    return ProbeScore(
        float(np.mean(accs)),
        float(np.std(accs)),
        auc(y, oof),
        float(np.nanstd(aucs)),
        folds,
        oof,
    )


def shuffled_aucs(x: np.ndarray, y: np.ndarray, repeats: int, seed: int = 0) -> np.ndarray:
    """The cross-validated AUC of the same probe on `repeats` seeded shuffles of the labels (the null)."""
    rng = np.random.default_rng(seed)
    return np.array([cross_validate(x, rng.permutation(y), seed).auc for _ in range(repeats)])


def permutation_p(observed: float, null: np.ndarray) -> float:
    """One-sided permutation p-value of `auc` against the shuffled-label AUCs (never 0)."""
    if math.isnan(observed) or not len(null):
        return math.nan
    return float((1 + np.sum(null >= observed)) / (1 + len(null)))


def verdict(observed: float, p: float, null_q95: float, baselines: dict[str, float]) -> str:
    """In words: whether the probe beats its controls (shuffled labels at ALPHA, and every baseline probe)."""
    if math.isnan(observed):
        return "not run"
    if math.isnan(p) or p >= ALPHA or observed <= null_q95:
        return "does not beat shuffled labels"
    worse = [
        name for name, value in baselines.items() if not math.isnan(value) and observed <= value
    ]
    if worse:
        return f"does not beat the {' and '.join(worse)} baseline"
    return "beats controls"
