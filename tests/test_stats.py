import numpy as np
import pytest
import torch

from vgh_lib.common import stats


def test_batch_mean_errors_matches_naive_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 3))
    target = np.array([0.1, -0.2, 0.3])
    sizes = [1, 7, 50, 333]
    got = stats.batch_mean_errors(x, target, sizes)
    for n, g in zip(sizes, got):
        errs = []
        for k in range(1000 // n):
            m = x[k * n:(k + 1) * n].mean(0)
            errs.append(np.linalg.norm(m - target) / np.linalg.norm(target))
        assert g == pytest.approx(np.sqrt(np.mean(np.square(errs))), rel=1e-12)


def test_batch_mean_errors_rejects_too_large_batch():
    with pytest.raises(ValueError, match="exceeds"):
        stats.batch_mean_errors(np.zeros((5, 2)), np.ones(2), [6])


def test_loglog_slope_recovers_power_law():
    n = np.array([10, 100, 1000, 10000])
    slope, se = stats.loglog_slope(n, 3.0 * n ** -0.5)
    assert slope == pytest.approx(-0.5, abs=1e-12)
    assert se == pytest.approx(0.0, abs=1e-10)


def test_cosine_and_relative_error():
    assert stats.cosine([1, 0], [0, 2]) == pytest.approx(0.0)
    assert stats.cosine([1, 1], [2, 2]) == pytest.approx(1.0)
    assert stats.cosine([1, 0], [-3, 0]) == pytest.approx(-1.0)
    assert np.isnan(stats.cosine([0, 0], [1, 0]))
    assert stats.relative_error([1.1, 0], [1, 0]) == pytest.approx(0.1)


def test_log_spaced_sizes():
    s = stats.log_spaced_sizes(10, 1000, 3)
    assert s == [10, 100, 1000]
    assert len(set(stats.log_spaced_sizes(1, 3, 10))) == len(stats.log_spaced_sizes(1, 3, 10))


def test_crossfit_cosine_with_two_folds_is_the_half_split_formula():
    rng = np.random.default_rng(1)
    mu = rng.normal(size=7)
    dA, dB, cA, cB = mu + 0.3 * rng.normal(size=(4, 7))
    rho, se = stats.crossfit_cosine(np.stack([dA, dB]), np.stack([cA, cB]))
    expect = 0.5 * (dA @ cB + dB @ cA) / np.sqrt((dA @ dB) * (cA @ cB))
    assert dA @ dB > 0 and cA @ cB > 0
    assert rho == pytest.approx(expect, rel=1e-12)
    assert np.isnan(se)  # no jackknife with two folds
    # a non-positive squared-norm estimate: ρ is undefined
    assert np.isnan(stats.crossfit_cosine(np.stack([dA, -dA]), np.stack([cA, cB]))[0])


def test_crossfit_cosine_by_naive_loops_and_jackknife():
    rng = np.random.default_rng(2)
    mu = rng.normal(size=5)
    a = mu + 0.3 * rng.normal(size=(6, 5))
    b = 0.5 * mu + rng.normal(size=5) * 0.2 + 0.3 * rng.normal(size=(6, 5))

    def naive(idx):
        ab = np.mean([a[i] @ b[j] for i in idx for j in idx if i != j])
        aa = np.mean([a[i] @ a[j] for i in idx for j in idx if i != j])
        bb = np.mean([b[i] @ b[j] for i in idx for j in idx if i != j])
        return ab / np.sqrt(aa * bb)

    rho, se = stats.crossfit_cosine(a, b)
    assert rho == pytest.approx(naive(range(6)), rel=1e-12)
    loo = np.array([naive([i for i in range(6) if i != k]) for k in range(6)])
    assert se == pytest.approx(np.sqrt(5 / 6 * np.sum((loo - loo.mean()) ** 2)), rel=1e-12)


def test_crossfit_cosine_is_calibrated_where_the_raw_cosine_is_attenuated():
    """Simulation: two processes with expectations at cosine 0.8 and heavy noise. The mean of ρ
    is close to 0.8 (raw cosine far below), and the jackknife SE matches the spread of ρ."""
    rng = np.random.default_rng(3)
    d, K, m = 20, 8, 50
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    w = rng.normal(size=d)
    w -= (w @ u) * u
    w /= np.linalg.norm(w)
    mu_a, mu_b = u, 0.8 * u + 0.6 * w  # cosine 0.8
    rhos, ses, raws = [], [], []
    for _ in range(400):
        fa = mu_a + rng.normal(size=(K, m, d)).mean(1) * 1.5
        fb = mu_b + rng.normal(size=(K, m, d)).mean(1) * 1.5
        r, s = stats.crossfit_cosine(fa, fb)
        rhos.append(r)
        ses.append(s)
        raws.append(stats.cosine(fa.mean(0), fb.mean(0)))
    rhos, ses = np.array(rhos), np.array(ses)
    assert abs(rhos.mean() - 0.8) < 0.02
    assert np.mean(raws) < 0.75  # what the correction removes
    assert 0.75 < np.median(ses) / rhos.std() < 1.4
    assert np.mean(np.abs(rhos - 0.8) <= 2 * ses) > 0.88  # ±2 SE covers about 95 %


def test_reliability_and_norm_z():
    f = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert stats.reliability(f) == pytest.approx(1.0)  # no noise
    g = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert np.isnan(stats.reliability(g))  # mean is zero
    # orthogonal folds: no shared signal (counting a fold with itself would give 1)
    assert stats.reliability(np.eye(2)) == pytest.approx(0.0)
    assert stats.norm_z([3.0, 4.0], [1.0, 0.0]) == pytest.approx(5.0)
    assert stats.norm_z([0.0, 0.0], [0.0, 0.0]) == 0.0
    # calibration: Gaussian means under the identity exceed z = 3 rarely (≤ P(χ²₁ > 9))
    rng = np.random.default_rng(4)
    sd = np.array([3.0, 1.0, 0.1, 0.1])
    zs = [stats.norm_z(rng.normal(size=4) * sd, sd) for _ in range(20000)]
    assert np.mean(np.square(zs)) == pytest.approx(1.0, abs=0.05)
    assert np.mean(np.array(zs) > 3) < 0.0027 + 0.001


def test_block_jackknife_se_of_a_mean_is_the_block_means_formula():
    """For the mean and equal blocks, the delete-one-block jackknife SE is exactly
    sd(block means) / sqrt(B)."""
    x = np.random.default_rng(3).normal(size=400)
    se = stats.block_jackknife_se(lambda rows: x[rows].mean(), 400, 8)
    blocks = x.reshape(8, 50).mean(1)
    assert se == pytest.approx(blocks.std(ddof=1) / np.sqrt(8), rel=1e-12)
    with pytest.raises(ValueError, match="n_blocks"):
        stats.block_jackknife_se(lambda rows: 0.0, 10, 1)


def test_block_jackknife_se_of_a_variance_ratio_is_calibrated():
    """Across independent replications, the jackknife SE of a ratio of sample variances is
    close to the ratio's actual spread (a wrong scale, such as a missing square root or a
    1/B in place of (B−1)/B, would be off; the block-means test above pins the exact factor)."""
    rng = np.random.default_rng(4)
    ratios, ses = [], []
    for _ in range(300):
        a, b = rng.normal(0, 3, 2000), rng.standard_t(5, 2000)
        ratios.append(a.var() / b.var())
        ses.append(stats.block_jackknife_se(lambda r: a[r].var() / b[r].var(), 2000, 20))
    assert np.mean(ses) == pytest.approx(np.std(ratios), rel=0.15)


def test_spearman_critical_values_match_the_published_table():
    """One-sided 5 % critical values of Spearman's ρ (exact tables: n = 5…8 give 0.900,
    0.829, 0.714, 0.643), and the permutation test agrees at n = 7."""
    assert [round(stats.spearman_critical(n), 3) for n in (5, 6, 7, 8)] == [0.9, 0.829, 0.714, 0.643]
    r = stats.spearman_critical(7)
    x = np.arange(7.0)
    # an ordering with exactly that ρ passes the permutation test at 5 % too
    y_at = next(np.array(p, float) for p in __import__("itertools").permutations(range(7))
                if abs(stats.spearman(x, np.array(p, float)) - r) < 1e-9)
    assert stats.permutation_pvalue([x], [y_at], 20_000, seed=1)[1] <= 0.05 + 0.005
    with pytest.raises(ValueError, match="n must be"):
        stats.spearman_critical(2)


def test_spearman_critical_beyond_enumeration_matches_the_published_table():
    """Above n = 9 the rule runs on random orderings; published one-sided 5 % values (Zar's
    table: n = 12 → 0.503, 20 → 0.380, 24 → 0.343, 30 → 0.306) agree to the table's rounding."""
    for n, table in ((12, 0.503), (20, 0.380), (24, 0.343), (30, 0.306)):
        assert stats.spearman_critical(n) == pytest.approx(table, abs=0.004)


def test_gram_matrix_is_every_inner_product_in_float64():
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float32)
    b = torch.tensor([0.5, -1.0, 1e-8], dtype=torch.float64)
    g = stats.gram_matrix([a, b])
    assert g.dtype == np.float64 and g.shape == (2, 2)
    cross = 0.5 - 2.0 + 3e-8  # float64 arithmetic: the float32 vector is widened first
    np.testing.assert_allclose(g, [[14.0, cross], [cross, 0.25 + 1.0 + 1e-16]], rtol=1e-15, atol=0)


def test_crossfit_sq_distance_is_unbiased_where_the_raw_distance_is_not():
    """Independent folds of two processes with known means: the cross-fitted ‖μ_A − μ_B‖²
    averages to the truth within Monte Carlo error; the raw distance of the pooled means is
    inflated by the noise, tr Σ_A / N + tr Σ_B / N."""
    rng = np.random.default_rng(0)
    d, K, m, reps = 20, 8, 5, 3000
    mu_a = rng.normal(0, 1, d)
    mu_b = mu_a + rng.normal(0, 0.3, d)
    truth = float(((mu_a - mu_b) ** 2).sum())
    est, raw = [], []
    for _ in range(reps):
        a = mu_a + rng.normal(0, 2.0, (K, m, d)).mean(1)
        b = mu_b + rng.normal(0, 2.0, (K, m, d)).mean(1)
        est.append(stats.crossfit_sq_distance(a, b))
        raw.append(float(((a.mean(0) - b.mean(0)) ** 2).sum()))
    se = np.std(est) / np.sqrt(reps)
    assert abs(np.mean(est) - truth) < 4 * se
    assert np.mean(raw) - truth == pytest.approx(2 * d * 4.0 / (K * m), rel=0.1)


def test_crossfit_relative_error_against_its_definition_and_its_jackknife():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1, 1, (6, 7)), rng.normal(1.2, 1, (6, 7))
    r, se = stats.crossfit_relative_error(a, b)
    off = ~np.eye(6, dtype=bool)
    aa, bb, ab = (a @ a.T)[off].mean(), (b @ b.T)[off].mean(), (a @ b.T)[off].mean()
    assert r == pytest.approx(np.sqrt((aa + bb - 2 * ab) / aa))
    loo = [stats.crossfit_relative_error(np.delete(a, k, 0), np.delete(b, k, 0))[0] for k in range(6)]
    assert se == pytest.approx(np.sqrt(5 / 6 * np.sum((np.array(loo) - np.mean(loo)) ** 2)))
    same = rng.normal(0, 1, (4, 7))
    assert stats.crossfit_relative_error(same, same)[0] == 0.0   # equal processes: r = 0, not noise
    assert np.isnan(stats.crossfit_relative_error(np.stack([a[0], -a[0]]), b[:2])[0])


def test_spearman_power_is_the_test_size_under_the_null():
    power = stats.spearman_power(20, rhos=(0.0, 0.5), n_sims=4000, seed=3)
    assert abs(power[0.0] - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 4000) + 0.005
    assert power[0.5] > 0.5
