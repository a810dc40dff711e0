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


# ---------------------------------------------- rank-based, within-group tests (issue 30)
def _recipe_design(rng, beta, n_groups=6, per=6, sd_group=1.0):
    groups = np.repeat(np.arange(n_groups), per)
    z = rng.uniform(0, 1, groups.size)
    x = z + rng.normal(0, sd_group, n_groups)[groups] + rng.normal(0, 0.5, groups.size)
    y = z + rng.normal(0, sd_group, n_groups)[groups] + beta * x + rng.normal(0, 0.5, groups.size)
    return x, y, z, groups


def test_within_group_permutation_keeps_groups_and_is_a_permutation():
    groups = np.array([0, 0, 1, 1, 1, 2])
    idx = prediction.within_group_permutation(groups, np.random.default_rng(0))
    assert sorted(idx) == list(range(6))
    np.testing.assert_array_equal(groups[idx], groups)


def test_partial_association_is_the_textbook_partial_correlation_in_one_group():
    rng = np.random.default_rng(1)
    x, y, z = rng.normal(size=(3, 40))
    y = y + x + z
    rxy, rxz, ryz = stats.pearson(x, y), stats.pearson(x, z), stats.pearson(y, z)
    want = (rxy - rxz * ryz) / np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2))
    got = prediction.partial_association(x, y, z, np.zeros(40), degree=1)
    assert got == pytest.approx(want, rel=1e-10)
    # the cubic and a group indicator that separates the units are used
    assert prediction.partial_association(x, y, z, np.zeros(40)) != pytest.approx(want, rel=1e-6)
    assert prediction.partial_association(x, y, z, np.arange(40) % 2, degree=1) != pytest.approx(want, rel=1e-6)
    # a z² confounder fools the linear adjustment, not the cubic one
    x2 = z ** 2 + 0.1 * rng.normal(size=40)
    y2 = z ** 2 + 0.1 * rng.normal(size=40)
    assert prediction.partial_association(x2, y2, z, np.zeros(40), degree=1) > 0.9
    assert abs(prediction.partial_association(x2, y2, z, np.zeros(40))) < 0.5


def test_partial_association_test_has_its_size_under_a_group_effect_and_power_under_an_effect():
    rng = np.random.default_rng(2)
    null = [prediction.partial_association_test(*_recipe_design(rng, 0.0), n_perm=99, seed=i)[1] <= 0.05
            for i in range(200)]
    alt = [prediction.partial_association_test(*_recipe_design(rng, 1.0), n_perm=99, seed=i)[1] <= 0.05
           for i in range(60)]
    # 200 draws: a binomial(200, 0.05) lies in [3, 19] with probability > 0.99
    assert 3 <= sum(null) <= 19
    assert np.mean(alt) > 0.8
    # a flipped effect never rejects the one-sided test
    x, y, z, g = _recipe_design(rng, -1.0)
    assert prediction.partial_association_test(x, y, z, g, 99, 0)[1] > 0.5


def test_fisher_interval_is_bounded_and_matches_its_formula():
    lo, hi = prediction.fisher_interval(0.5, 28, n_covariates=2)
    q = 1.959963984540054 / np.sqrt(23)
    assert (lo, hi) == pytest.approx((np.tanh(np.arctanh(0.5) - q), np.tanh(np.arctanh(0.5) + q)))
    lo, hi = prediction.fisher_interval(0.99, 6)
    assert -1 < lo < 0.99 < hi < 1
    assert np.isnan(prediction.fisher_interval(0.3, 5, n_covariates=2)[0])


def test_holm_steps_down_and_stops_at_the_first_acceptance():
    assert prediction.holm([0.01, 0.04, 0.03]) == [True, False, False]
    assert prediction.holm([0.01, 0.02, 0.04]) == [True, True, True]
    assert prediction.holm([0.2, 0.01, float("nan")]) == [False, True, False]
    adj = prediction.holm_adjusted([0.01, 0.04, 0.03])
    assert adj == pytest.approx([0.03, 0.06, 0.06])
    rng = np.random.default_rng(5)
    for _ in range(200):   # rejections by adjusted p-values are Holm's
        p = rng.uniform(0, 0.08, 3)
        assert [a <= 0.05 for a in prediction.holm_adjusted(p)] == prediction.holm(p)


def test_split_half_reliability_matches_the_true_reliability_of_a_mean():
    rng = np.random.default_rng(3)
    truth = rng.normal(0, 1, 4000)
    values = truth[:, None] + rng.normal(0, 2, (4000, 6))
    r, rsb = prediction.split_half_reliability(values)
    want = 1 / (1 + 4 / 6)                  # var(true) / (var(true) + var(noise)/6)
    assert rsb == pytest.approx(want, abs=0.03)
    assert r == pytest.approx(1 / (1 + 4 / 3), abs=0.03)
    # within groups: a group shift shared by both halves no longer counts as reliable signal
    groups = np.repeat(np.arange(400), 10)
    shifted = values + 10 * rng.normal(size=400)[groups][:, None]
    assert prediction.split_half_reliability(shifted)[1] > 0.95
    assert prediction.split_half_reliability(shifted, groups)[1] == pytest.approx(want, abs=0.05)


def test_repetitions_for_inverts_spearman_brown():
    rel = prediction.spearman_brown(0.5, 3)
    assert rel == pytest.approx(0.75)
    assert prediction.repetitions_for(0.5, 6, 0.75) == pytest.approx(18)
    assert prediction.repetitions_for(-0.1, 6, 0.8) == float("inf")
    assert prediction.disattenuate(0.4, 0.64) == pytest.approx(0.5)


def test_rank_score_oos_learns_the_direction_out_of_group():
    groups = np.repeat(np.arange(4), 5)
    x = np.tile(np.arange(5.0), 4)
    assert prediction.rank_score_oos(x, x ** 3, groups) == pytest.approx(1.0)
    assert prediction.rank_score_oos(x, -x, groups) == pytest.approx(1.0)
    y = x.copy()
    y[groups == 0] *= -1                    # one group against the others
    assert prediction.rank_score_oos(x, y, groups) == pytest.approx(0.5)


def test_jackknife_bounded_stays_inside_minus_one_one():
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(5), 4)
    x = rng.normal(size=20)
    y = x + 0.3 * rng.normal(size=20)
    f = lambda m: stats.spearman(x[m], y[m])                     # noqa: E731
    plain, bounded = prediction.jackknife(f, groups), prediction.jackknife_bounded(f, groups)
    assert bounded.value == plain.value
    assert -1 <= bounded.lo <= bounded.value <= bounded.hi <= 1


def test_jackknife_r2_stays_below_one_and_matches_the_log_scale_jackknife():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(4), 5)
    x = rng.normal(size=20)
    y = x + np.where(groups == 0, 0.3, 0.05) * rng.normal(size=20)  # R² near 1, one noisy group
    f = lambda m: prediction.r2_oos(y[m], x[m])                    # noqa: E731
    plain, bounded = prediction.jackknife(f, groups), prediction.jackknife_r2(f, groups)
    assert plain.hi > 1                                            # the case the transform is for
    assert bounded.value == plain.value
    assert bounded.lo <= bounded.value <= bounded.hi < 1
    on_log = prediction.jackknife(lambda m: np.log(1 - f(m)), groups)
    assert bounded.lo == pytest.approx(1 - np.exp(on_log.hi))     # the ends swap under 1 − exp
    assert bounded.hi == pytest.approx(1 - np.exp(on_log.lo))
