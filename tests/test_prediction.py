"""Out-of-recipe prediction (vgh_lib.common.prediction) and the predictor panel
(vgh_lib.common.panel) against closed forms, exact enumeration and naive loops."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import binom

from vgh_lib.common import panel, prediction, stats


# ------------------------------------------------------------------------------ panel
def test_panel_terms_are_their_closed_forms_by_enumeration():
    """Non-degenerate fraction and pass@k by enumerating every outcome of G Bernoulli draws;
    H as the expectation of the unbiased pass@k estimator over the binomial."""
    p = np.array([0.0, 0.1, 0.37, 0.5, 0.93, 1.0])
    G, k, n = 4, 3, 7
    t = panel.per_prompt(np.log(np.maximum(p, 1e-300)), G, k, coverage_k=5)
    for i, pi in enumerate(p):
        outcomes = list(itertools.product([0, 1], repeat=G))
        prob = [pi ** sum(o) * (1 - pi) ** (G - sum(o)) for o in outcomes]
        nondeg = sum(w for o, w in zip(outcomes, prob) if 0 < sum(o) < G)
        assert t["non-degenerate"][i] == pytest.approx(nondeg, abs=1e-12)
        cov = sum(w for o, w in zip(itertools.product([0, 1], repeat=5),
                                    [pi ** sum(o) * (1 - pi) ** (5 - sum(o))
                                     for o in itertools.product([0, 1], repeat=5)]) if sum(o) > 0)
        assert t["coverage"][i] == pytest.approx(cov, abs=1e-12)
        e_passk = sum(binom.pmf(c, n, pi) * stats.pass_at_k(n, c, k) for c in range(n + 1))
        assert t["H"][i] == pytest.approx(e_passk - pi, abs=1e-9)
        assert t["learnability"][i] == pytest.approx(pi * (1 - pi), abs=1e-12)
    assert t["NLL"][1] == pytest.approx(-math.log(0.1))


def test_panel_rejects_probabilities_instead_of_logs():
    with pytest.raises(ValueError, match="log-probabilities"):
        panel.per_prompt(np.array([0.2, 0.5]), 8, 4)


# ---------------------------------------------------------------- out-of-recipe fits
def _data(seed=0, R=5, per=6):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(R), per)
    x = rng.uniform(0, 1, g.size)
    y = 2 * x + rng.normal(0, 0.3, R)[g] + rng.normal(0, 0.1, g.size)
    return x, y, g


def test_loro_predictions_equal_a_naive_loop():
    x, y, g = _data()
    got = prediction.loro_predictions(prediction.features(x, "identity"), y, g)
    for r in np.unique(g):
        m = g == r
        slope, icpt = np.polyfit(x[~m], y[~m], 1)
        np.testing.assert_allclose(got[m], icpt + slope * x[m], rtol=1e-10)


def test_cubic_features_fit_the_same_function_as_raw_powers():
    x, y, g = _data(1)
    a = prediction.loro_predictions(prediction.features(x, "cubic"), y, g)
    raw = np.stack([x, x ** 2, x ** 3], axis=1)
    np.testing.assert_allclose(a, prediction.loro_predictions(raw, y, g), rtol=1e-7)


def test_r2_and_rho_closed_forms():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert prediction.r2_oos(y, y) == 1.0
    assert prediction.r2_oos(y, np.full(4, y.mean())) == 0.0
    assert prediction.r2_oos(y, y[::-1]) == pytest.approx(1 - 20 / 5)
    g = np.array([0, 0, 1, 1])
    assert prediction.rho_oos(y, y, g) == 1.0
    assert prediction.rho_oos(y, -y, g) == -1.0


def test_jackknife_of_the_mean_is_the_sd_of_group_means():
    x, _, g = _data(2)
    iv = prediction.jackknife(lambda m: x[m].mean(), g)
    means = np.array([x[g == r].mean() for r in np.unique(g)])
    assert iv.value == pytest.approx(x.mean())
    assert iv.se == pytest.approx(means.std(ddof=1) / np.sqrt(means.size))
    assert iv.df == 4 and iv.lo < iv.value < iv.hi


def test_freedman_lane_finds_a_real_effect_and_keeps_its_size():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(6), 6)
    rejections = 0
    for s in range(40):
        base = rng.uniform(0, 1, g.size)
        extra = rng.normal(size=g.size)
        y = np.sin(3 * base) + rng.normal(0, 0.2, g.size)
        _, p = prediction.freedman_lane(prediction.features(base, "cubic"), extra[:, None], y, g, 39, s)
        rejections += p <= 0.05
    assert rejections <= 6  # 40 null datasets at level 0.05: P(> 6) < 0.02
    y = np.sin(3 * base) + 0.5 * extra + rng.normal(0, 0.05, g.size)
    stat, p = prediction.freedman_lane(prediction.features(base, "cubic"), extra[:, None], y, g, 99, 0)
    assert stat > 0.1 and p == pytest.approx(1 / 100)


def test_matched_pairs_are_greedy_closest_first_across_groups():
    stage = np.array([0.10, 0.12, 0.50, 0.53, 0.54, 0.90])
    groups = np.array([0, 1, 0, 1, 1, 0])
    pairs = prediction.matched_pairs(stage, groups, 0.05)
    # closest first: (0, 1) at 0.02, then (2, 3) at 0.03; (2, 4) at 0.04 would reuse 2
    assert pairs == [(0, 1), (2, 3)]
    assert prediction.matched_pairs(stage, np.zeros(6), 1.0) == []


def test_sign_test_is_the_binomial_tail():
    agree, n, p = prediction.sign_test([1, 2, -1, 3, 0], [1, 1, -2, -1, 5])
    assert (agree, n) == (3, 4)
    assert p == pytest.approx(binom.sf(2, 4, 0.5))
