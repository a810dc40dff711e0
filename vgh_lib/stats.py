"""Small statistics helpers shared by the notebooks: cosines, relative errors,
Monte Carlo error curves, log-log slopes, bootstrap intervals and correlations."""

from __future__ import annotations

import numpy as np
import torch


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def cosine(a, b) -> float:
    """Cosine of the angle between two vectors (flattened)."""
    a, b = _np(a).ravel(), _np(b).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if denom == 0.0:
        return float("nan")
    return float(a @ b / denom)


def relative_error(estimate, target) -> float:
    """``‖estimate − target‖ / ‖target‖``."""
    e, t = _np(estimate).ravel(), _np(target).ravel()
    return float(np.linalg.norm(e - t) / np.linalg.norm(t))


def batch_mean_errors(samples, target, sizes) -> np.ndarray:
    """Root-mean-square relative error of the mean of ``N`` samples, for each ``N``.

    ``samples`` (M, n) is cut into ``M // N`` disjoint batches of ``N`` rows; each
    batch mean gives one relative error against ``target`` and the errors are
    combined as an RMS. Disjoint batches make the errors at one ``N`` independent.
    """
    x, t = _np(samples), _np(target).ravel()
    tn = np.linalg.norm(t)
    out = []
    for n in sizes:
        k = x.shape[0] // n
        if k < 1:
            raise ValueError(f"batch size {n} exceeds the {x.shape[0]} samples")
        means = x[: k * n].reshape(k, n, -1).mean(1)  # (k, d)
        err = np.linalg.norm(means - t, axis=1) / tn
        out.append(np.sqrt(np.mean(err ** 2)))
    return np.asarray(out)


def loglog_slope(sizes, errors) -> tuple[float, float]:
    """Least-squares slope of ``log(error)`` on ``log(size)``, and its standard error."""
    lx, ly = np.log(_np(sizes)), np.log(_np(errors))
    X = np.stack([np.ones_like(lx), lx], 1)
    coef, *_ = np.linalg.lstsq(X, ly, rcond=None)
    resid = ly - X @ coef
    dof = max(len(lx) - 2, 1)
    cov = (resid @ resid / dof) * np.linalg.inv(X.T @ X)
    return float(coef[1]), float(np.sqrt(cov[1, 1]))


def log_spaced_sizes(n_min: int, n_max: int, count: int) -> list[int]:
    """``count`` distinct integers spaced evenly in log between ``n_min`` and ``n_max``."""
    sizes = np.unique(np.round(np.geomspace(n_min, n_max, count)).astype(int))
    return [int(s) for s in sizes]


def bootstrap_mean_ci(values, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of ``values`` (resampled with replacement)."""
    x = _np(values).ravel()
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def pearson(x, y) -> float:
    """Pearson correlation; NaN when either input is constant or has fewer than 2 points."""
    a, b = _np(x).ravel(), _np(y).ravel()
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def ranks(x) -> np.ndarray:
    """Ranks starting at 1, ties given their average rank (as scipy's ``rankdata``)."""
    a = _np(x).ravel()
    order = np.argsort(a, kind="mergesort")
    r = np.empty(a.size)
    r[order] = np.arange(1, a.size + 1)
    for v in np.unique(a):  # average the ranks of ties
        tie = a == v
        if tie.sum() > 1:
            r[tie] = r[tie].mean()
    return r


def spearman(x, y) -> float:
    """Spearman rank correlation: Pearson correlation of the ranks."""
    return pearson(ranks(x), ranks(y))
