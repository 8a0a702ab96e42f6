"""Similarity measures that separate strategies (analysis.similarity) and the probe with its
controls (analysis.probe)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group
from sklearn.metrics import roc_auc_score

from taskvec.analysis.probe import auc, cross_validate, permutation_p, shuffled_aucs, verdict
from taskvec.analysis.similarity import (
    centered_cosines,
    cosine,
    distance_in_spread,
    linear_cka,
    pair_measures,
    strategy_probe,
)

D, N = 64, 40


def _session(
    rng: np.random.Generator, shared: np.ndarray, shift: np.ndarray | None = None
) -> np.ndarray:
    """N samples around a large shared mean (as residual streams have), unit noise, optionally shifted."""
    return shared + rng.normal(size=(N, D)) + (0 if shift is None else shift)


@pytest.fixture
def worlds() -> tuple[list[np.ndarray], np.ndarray]:
    """Sessions A, A' (same distribution) and B (A moved by 6 noise-sds along one direction)."""
    rng = np.random.default_rng(0)
    shared = rng.normal(size=D)
    shared *= 60 / np.linalg.norm(shared)
    direction = np.eye(D)[5] * 6.0
    return [
        _session(rng, shared),
        _session(rng, shared),
        _session(rng, shared, direction),
    ], direction


def test_one_direction_is_seen_by_centred_cosine_and_probe_not_by_raw_cosine(worlds) -> None:
    (a, a2, b), _ = worlds
    means = [v.mean(0) for v in (a, a2, b)]
    raw_ab, raw_aa = cosine(means[0], means[2]), cosine(means[0], means[1])
    assert (
        raw_ab > 0.99 and raw_aa > 0.99 and abs(raw_ab - raw_aa) < 0.01
    )  # raw cosine: no difference
    centred = centered_cosines(means)
    assert centred[0, 2] < -0.75 and centred[1, 2] < -0.75 and centred[0, 1] > 0.6
    ids = [[f"s{i}" for i in range(N)]] * 3
    ab, aa = pair_measures([a, a2, b], ids, 0, 2), pair_measures([a, a2, b], ids, 0, 1)
    assert ab["probe_auc"] > 0.95 and aa["probe_auc"] < 0.75
    assert ab["distance_spread"] > 3 * aa["distance_spread"]
    assert ab["samples_cos_centered"] < -0.2 < 0.2 < ab["own_cos_centered"]
    assert ab["cos_centered_lo"] < ab["cos_centered_hi"] < -0.5  # bootstrap interval away from 0
    assert ab["cos_means_lo"] <= raw_ab <= ab["cos_means_hi"]


def test_two_sessions_the_probe_tells_them_apart_only_when_they_differ(worlds) -> None:
    (a, a2, b), _ = worlds
    assert strategy_probe(a, b)[0] > 0.95
    assert strategy_probe(a, a2)[0] < 0.75
    assert distance_in_spread(a, b) > 3 * distance_in_spread(a, a2)


def test_cka_is_one_with_itself_invariant_to_rotation_and_scale() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 16)) @ rng.normal(size=(16, 16))
    q = ortho_group.rvs(16, random_state=2)
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, x @ q) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q + 7.0) == pytest.approx(1.0)
    assert linear_cka(x, rng.normal(size=(30, 16))) < 0.6
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(x, x[:10])


def test_probe_on_a_linear_label_beats_its_controls() -> None:
    rng = np.random.default_rng(3)
    y = rng.permutation(np.repeat([0, 1], 30))
    direction = (
        rng.normal(size=100) * 0.3
    )  # a dense direction, as a feature of the residual stream is
    x = rng.normal(size=(60, 100)) + np.outer(2 * y - 1, direction)
    score = cross_validate(x, y)
    null = shuffled_aucs(x, y, 40)
    p = permutation_p(score.auc, null)
    assert score.auc > 0.9 and score.folds == 5 and p == pytest.approx(1 / 41)
    assert (
        verdict(score.auc, p, float(np.quantile(null, 0.95)), {"surface": 0.55}) == "beats controls"
    )
    assert verdict(score.auc, p, 0.6, {"surface": 1.0}) == "does not beat the surface baseline"


def test_probe_on_noise_labels_does_not() -> None:
    """Over five noise worlds the AUC averages near 0.5 and p is large (one world alone may be a fluke,
    which is what a calibrated p-value allows: about one in twenty below 0.05)."""
    aucs, ps, verdicts = [], [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(100, 100))
        y = rng.permutation(np.repeat([0, 1], 50))
        score = cross_validate(x, y)
        null = shuffled_aucs(x, y, 40)
        aucs.append(score.auc)
        ps.append(permutation_p(score.auc, null))
        verdicts.append(verdict(score.auc, ps[-1], float(np.quantile(null, 0.95)), {}))
    assert 0.4 < np.mean(aucs) < 0.6 and np.median(ps) > 0.3
    assert verdicts.count("does not beat shuffled labels") >= 4


def test_auc_matches_sklearn_and_one_class_is_not_run() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 50)
    score = rng.normal(size=50).round(1)  # ties
    assert auc(y, score) == pytest.approx(roc_auc_score(y, score))
    one = cross_validate(rng.normal(size=(10, 4)), np.array([1] * 9 + [0]))
    assert one.folds == 0 and np.isnan(one.auc)
    assert verdict(one.auc, np.nan, np.nan, {}) == "not run"
