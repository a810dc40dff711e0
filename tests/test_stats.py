import numpy as np
import pytest

from vgh_lib import stats


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
