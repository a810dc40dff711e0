"""Small statistics helpers shared by the notebooks: cosines, relative errors,
Monte Carlo error curves, log-log slopes, bootstrap intervals and correlations."""

from __future__ import annotations

import math

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


def block_jackknife_se(statistic, n: int, n_blocks: int) -> float:
    """Delete-one-block jackknife standard error of ``statistic(rows)`` over ``n`` i.i.d. rows
    cut into ``n_blocks`` contiguous blocks (``rows``: the indices kept). For a smooth
    statistic of many rows, such as a ratio of variances, it is the delta-method standard
    error without the derivatives."""
    if n_blocks < 2 or n_blocks > n:
        raise ValueError(f"need 2 ≤ n_blocks ≤ n, got n_blocks={n_blocks}, n={n}")
    edges = np.linspace(0, n, n_blocks + 1).astype(int)
    vals = np.array([statistic(np.r_[0:edges[b], edges[b + 1]:n]) for b in range(n_blocks)], float)
    return float(np.sqrt((n_blocks - 1) / n_blocks * np.sum((vals - vals.mean()) ** 2)))


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


# ------------------------------------------------------------ U-statistic of a squared norm
def u_statistic_sq_norm(gram, members=None) -> float:
    """``‖g‖²`` estimated without bias from M independent unbiased estimates ``ĝ_1..ĝ_M`` of
    ``g``: the mean of ``⟨ĝ_i, ĝ_j⟩`` over pairs ``i ≠ j``. ``gram`` is their (M, M) Gram matrix.

    ``members`` (indices into the M estimates, repeats allowed, as in a bootstrap draw) uses
    only the pairs of draws that are *different* estimates, so that a repeated estimate never
    pairs with itself (that would add its noise ``‖ĝ − g‖²``).
    """
    gram = np.asarray(gram, float)
    idx = np.arange(gram.shape[0]) if members is None else np.asarray(members)
    sub = gram[np.ix_(idx, idx)]
    distinct = idx[:, None] != idx[None, :]
    if not distinct.any():
        return float("nan")
    return float(sub[distinct].mean())


def mean_offdiag_inner(estimates) -> float:
    """:func:`u_statistic_sq_norm` from the K estimates themselves, (K, D), without forming the
    Gram matrix: ``(‖Σ_k x_k‖² − Σ_k ‖x_k‖²) / (K(K − 1))``."""
    X = np.asarray(estimates, float).reshape(len(estimates), -1)
    K = X.shape[0]
    if K < 2:
        raise ValueError(f"need at least 2 estimates, got {K}")
    s = X.sum(0)
    return float((s @ s - np.einsum("ij,ij->", X, X)) / (K * (K - 1)))


def u_statistic_se(gram) -> float:
    """Jackknife standard error of :func:`u_statistic_sq_norm` (leave one estimate out)."""
    gram = np.asarray(gram, float)
    M = gram.shape[0]
    if M < 3:
        return float("nan")
    loo = np.array([u_statistic_sq_norm(gram, np.delete(np.arange(M), i)) for i in range(M)])
    return float(np.sqrt((M - 1) / M * np.sum((loo - loo.mean()) ** 2)))


def norm_from_sq(sq: float, sq_se: float = float("nan")) -> tuple[float, float]:
    """``(sqrt(max(0, sq)), its delta-method SE)`` from a squared-norm estimate and its SE."""
    s = float(np.sqrt(max(0.0, sq)))
    return s, (float(sq_se / (2 * s)) if s > 0 else float("nan"))


# ---------------------------------------------------------------- permutation inference
def spearman_rows(x, y) -> np.ndarray:
    """Spearman correlation of ``x`` (n,) or (R, n) with every row of ``y`` (R, n); NaN where a
    row is constant. Vectorised :func:`spearman` (average ranks for ties)."""
    from scipy.stats import rankdata

    y = np.atleast_2d(np.asarray(y, float))
    x = np.broadcast_to(np.atleast_2d(np.asarray(x, float)), y.shape)
    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx = rx - rx.mean(1, keepdims=True)
    ry = ry - ry.mean(1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(1) * (ry ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(1) / np.where(den > 0, den, 1), np.nan)


def spearman_critical(n: int, alpha: float = 0.05, n_draws: int = 400_000) -> float:
    """The smallest Spearman correlation of ``n`` untied points whose one-sided permutation
    p-value ``P(ρ ≥ r)`` is at most ``alpha``: the least effect a rank test over ``n`` design
    points can detect. Exact for ``n ≤ 9`` (all ``n!`` orderings); for larger ``n``, the same
    rule applied to ``n_draws`` random orderings (seeded, so the value is reproducible; its
    Monte Carlo error at n = 24 is below 0.002)."""
    import itertools

    if n < 3:
        raise ValueError(f"n must be at least 3, got {n}")
    if n <= 9:
        perms = np.array(list(itertools.permutations(range(n))))
    else:
        rng = np.random.default_rng(20261130 + n)
        perms = np.argsort(rng.random((n_draws, n)), axis=1)
    d2 = ((perms - np.arange(n)) ** 2).sum(axis=1)
    rho = np.sort(1 - 6 * d2 / (n * (n * n - 1)))
    values, first = np.unique(rho, return_index=True)
    tail = 1 - first / rho.size          # P(ρ ≥ value) for each distinct value
    ok = values[tail <= alpha + 1e-12]
    return float(ok.min()) if ok.size else float("nan")


def permutation_pvalue(xs, ys, n_perm: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """One-sided permutation test of a positive rank correlation, pooled over groups.

    ``xs``, ``ys``: lists of equally long arrays, one pair per group (e.g. per trajectory).
    The statistic is the mean over groups of Spearman(x, y); the null permutes ``y`` within
    each group (the design points are fixed, only which outcome goes with which point is
    random under the null). Returns ``(statistic, p)`` with ``p = (1 + #{T* ≥ T}) / (1 + n_perm)``,
    or ``(nan, nan)`` when the statistic is undefined (a group with constant ``x`` or ``y``).
    """
    rng = np.random.default_rng(seed)
    observed, null = [], []
    for x, y in zip(xs, ys, strict=True):
        x, y = np.asarray(x, float), np.asarray(y, float)
        observed.append(spearman_rows(x, y[None])[0])
        perms = rng.permuted(np.tile(y, (n_perm, 1)), axis=1)
        null.append(spearman_rows(x, perms))
    t = float(np.mean(observed))
    if np.isnan(t):
        return float("nan"), float("nan")
    t_null = np.mean(np.stack(null), axis=0)  # a permutation of non-constant data is non-constant
    return t, float((1 + np.sum(t_null >= t - 1e-12)) / (1 + n_perm))


# ------------------------------------------------- noise-corrected statistics (book/theory.md §4b)
def _fold_matrix(folds) -> np.ndarray:
    x = _np(folds)
    return x.reshape(x.shape[0], -1)


def _crossfit_parts(A: np.ndarray, B: np.ndarray, keep: np.ndarray) -> tuple[float, float, float]:
    """Cross-fitted ⟨μ_A, μ_B⟩, ‖μ_A‖², ‖μ_B‖² from the folds in ``keep`` (pairs i ≠ j only)."""
    a, b = A[keep], B[keep]
    k = a.shape[0]
    off = ~np.eye(k, dtype=bool)
    gab, gaa, gbb = a @ b.T, a @ a.T, b @ b.T
    return float(gab[off].mean()), float(gaa[off].mean()), float(gbb[off].mean())


def crossfit_cosine(folds_a, folds_b) -> tuple[float, float]:
    """Noise-corrected cosine of two expectations from ``K ≥ 2`` independent folds of each.

    ``folds_a`` (K, …) holds the means of K independent, equal-size folds of the samples of
    one process, ``folds_b`` those of the other. With ``U_ab = mean_{i≠j} ⟨a_i, b_j⟩`` and
    ``U_aa = mean_{i≠j} ⟨a_i, a_j⟩``, ``ρ = U_ab / sqrt(U_aa U_bb)``; for K = 2 this is
    ``½(⟨a_A, b_B⟩ + ⟨a_B, b_A⟩) / sqrt(⟨a_A, a_B⟩⟨b_A, b_B⟩)``. Each U is an unbiased estimate
    of the corresponding inner product of the expectations, so ρ is free of the attenuation
    that noise causes in the raw cosine (and of inflation by noise shared between the
    processes: pairs within one fold are never used). As a ratio it keeps a small upward bias
    of order 1/N (the square root in the denominator), and it can leave [−1, 1] by noise.

    Returns ``(ρ, se)``: the delete-one-fold jackknife standard error (NaN for K = 2 or when
    a squared-norm estimate is not positive; then ρ is NaN too if the full-sample one is not).
    """
    A, B = _fold_matrix(folds_a), _fold_matrix(folds_b)
    if A.shape != B.shape or A.shape[0] < 2:
        raise ValueError(f"need matching fold arrays with K ≥ 2 folds, got {A.shape} and {B.shape}")
    K = A.shape[0]

    def rho(keep):
        ab, aa, bb = _crossfit_parts(A, B, keep)
        return ab / np.sqrt(aa * bb) if aa > 0 and bb > 0 else float("nan")

    return _fold_jackknife(rho, K)


def _fold_jackknife(statistic, K: int) -> tuple[float, float]:
    """``statistic`` (a function of a boolean mask of the K folds kept) on all folds, and its
    delete-one-fold jackknife standard error: NaN for K < 3, or when the statistic is NaN on
    all folds or on any K − 1 of them."""
    full = float(statistic(np.ones(K, dtype=bool)))
    if K < 3 or np.isnan(full):
        return full, float("nan")
    loo = np.array([statistic(np.arange(K) != k) for k in range(K)])
    if np.isnan(loo).any():
        return full, float("nan")
    return full, float(np.sqrt((K - 1) / K * np.sum((loo - loo.mean()) ** 2)))


def crossfit_sq_distance(folds_a, folds_b) -> float:
    """Unbiased estimate of ``‖μ_A − μ_B‖²`` from K ≥ 2 independent folds of each of two
    independent processes: ``U_aa + U_bb − 2 U_ab`` with every U over pairs of *different*
    folds (:func:`_crossfit_parts`), so no fold's noise meets itself. It can be negative when
    the distance is small against the noise."""
    A, B = _fold_matrix(folds_a), _fold_matrix(folds_b)
    ab, aa, bb = _crossfit_parts(A, B, np.ones(A.shape[0], dtype=bool))
    return aa + bb - 2 * ab


def crossfit_relative_error(folds_a, folds_b) -> tuple[float, float]:
    """Noise-corrected relative error ``r = ‖μ_A − μ_B‖ / ‖μ_A‖`` of two expectations from
    K ≥ 2 independent folds of each (book/theory.md §3: Theorem 2 bounds the numerator).

    ``r² = (U_aa + U_bb − 2 U_ab) / U_aa``: numerator and denominator are unbiased
    (:func:`crossfit_sq_distance`); a negative numerator (the processes agree within noise) gives
    ``r = 0``. Returns ``(r, se)`` with the delete-one-fold jackknife standard error of ``r``
    (NaN for K < 3, or when ``U_aa ≤ 0``: then ``μ_A`` is not resolved and ``r`` is NaN).
    """
    A, B = _fold_matrix(folds_a), _fold_matrix(folds_b)
    if A.shape != B.shape or A.shape[0] < 2:
        raise ValueError(f"need matching fold arrays with K ≥ 2 folds, got {A.shape} and {B.shape}")
    K = A.shape[0]

    def r(keep):
        ab, aa, bb = _crossfit_parts(A, B, keep)
        return float(np.sqrt(max(0.0, aa + bb - 2 * ab) / aa)) if aa > 0 else float("nan")

    return _fold_jackknife(r, K)


def reliability(folds) -> float:
    """Share of the squared norm of the pooled mean that is signal: ``U / ‖mean‖²`` with
    ``U = mean_{i≠j} ⟨m_i, m_j⟩`` over K ≥ 2 independent equal-size fold means ``m_i``.

    ``E‖mean‖² = ‖μ‖² + tr Σ / N`` and ``E U = ‖μ‖²``: 1 for a noiseless mean, about 0 for
    pure noise. NaN when the pooled mean is zero.
    """
    A = _fold_matrix(folds)
    K = A.shape[0]
    if K < 2:
        raise ValueError("need at least 2 folds")
    m = A.mean(0)
    denom = float(m @ m)
    if denom == 0.0:
        return float("nan")
    g = A @ A.T
    return float(g[~np.eye(K, dtype=bool)].mean() / denom)


def norm_z(diff, se) -> float:
    """``‖diff‖ / sqrt(Σ se²)``: a discrepancy vector against its Monte Carlo standard errors.

    ``diff`` is an estimate of a vector that is zero when the identity holds, ``se`` its
    per-component standard errors (same shape). Under the identity ``z²`` has mean about 1,
    and for a Gaussian estimate ``P(z > 3) ≤ P(χ²₁ > 9) ≈ 0.0027`` whatever the covariance
    (a weighted mean of χ²₁ variables has a lighter tail than one χ²₁ beyond about 1.5).
    """
    d, s = _np(diff).ravel(), _np(se).ravel()
    var = float(np.sum(s ** 2))
    if var == 0.0:
        return float("inf") if np.any(d != 0) else 0.0
    return float(np.linalg.norm(d) / np.sqrt(var))


def gram_matrix(vectors) -> np.ndarray:
    """The (M, M) inner products of M 1-D tensors, in float64 on the host: the Gram matrix of
    independent update estimates whose U-statistic (:func:`u_statistic_sq_norm`) is the
    signal. One place for the tiny models, the real LM and ``vgh probe``."""
    g = torch.stack([v.double() for v in vectors])
    return (g @ g.T).cpu().numpy()


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` successes: ``1 − C(n−c, k)/C(n, k)``."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 ≤ c ≤ n and 1 ≤ k ≤ n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def spearman_power(n: int, rhos=(0.3, 0.5, 0.7), n_sims: int = 4000, seed: int = 0,
                   alpha: float = 0.05) -> dict[float, float]:
    """Power of the one-sided Spearman test over ``n`` tasks (reject when ρ̂ ≥ the critical
    value :func:`spearman_critical`) when predictor and gain are bivariate
    normal with Pearson correlation ρ (a measured gain's noise lowers the correlation it shows)."""
    crit = spearman_critical(n, alpha)
    rng = np.random.default_rng(seed)
    out = {}
    for rho in rhos:
        x = rng.standard_normal((n_sims, n))
        y = rho * x + np.sqrt(1 - rho * rho) * rng.standard_normal((n_sims, n))
        out[float(rho)] = float(np.mean(spearman_rows(x, y) >= crit - 1e-12))
    return out
