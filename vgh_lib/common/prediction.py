"""Out-of-group prediction: how well a calibrated predictor forecasts a held-out group
(issue 19; the design is ``book/09_preregistration.md``).

The units are checkpoints; the groups are pretraining recipes. A predictor is *calibrated*
by ordinary least squares of the outcome on features of it (:func:`features`), fitted on all
recipes but one and applied to the one left out (:func:`loro_predictions`). Its out-of-recipe
performance is

* ``R²_oos = 1 − Σ (y − ŷ)² / Σ (y − ȳ)²`` over all held-out predictions (ȳ the grand mean);
* ``ρ_oos``, the mean over recipes of the Spearman correlation of ŷ and y within the recipe.

Intervals delete one recipe at a time (:func:`jackknife`, a t interval with R − 1 degrees of
freedom); the incremental value of one feature over others gets a Freedman–Lane residual
permutation test (:func:`freedman_lane`); checkpoints of different recipes at the same stage
are paired by :func:`matched_pairs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vgh_lib.common import stats

TRANSFORMS = ("identity", "log", "cubic")


def features(x, transform: str) -> np.ndarray:
    """The calibration's features of predictor values ``x``, (n, d): ``identity`` → x,
    ``log`` → log(max(x, 1e-12)), ``cubic`` → (x, x², x³) after centring and scaling x by its
    own mean and SD (for a well-conditioned fit; the fitted function does not depend on it)."""
    x = np.asarray(x, float)
    if transform == "identity":
        return x[:, None]
    if transform == "log":
        return np.log(np.maximum(x, 1e-12))[:, None]
    if transform == "cubic":
        z = (x - x.mean()) / (x.std() or 1.0)
        return np.stack([z, z ** 2, z ** 3], axis=1)
    raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")


def ols_fit_predict(X_train, y_train, X_test) -> np.ndarray:
    """Least-squares fit with an intercept on (X_train, y_train), evaluated at X_test."""
    A = np.column_stack([np.ones(len(X_train)), X_train])
    beta, *_ = np.linalg.lstsq(A, y_train, rcond=None)
    return np.column_stack([np.ones(len(X_test)), X_test]) @ beta


def loro_predictions(X, y, groups) -> np.ndarray:
    """Each unit's prediction from the fit on every other group (leave one group out)."""
    X, y, groups = np.asarray(X, float), np.asarray(y, float), np.asarray(groups)
    out = np.empty_like(y)
    for g in np.unique(groups):
        test = groups == g
        out[test] = ols_fit_predict(X[~test], y[~test], X[test])
    return out


def r2_oos(y, yhat) -> float:
    """``1 − Σ (y − ŷ)² / Σ (y − ȳ)²`` (can be negative: worse than the grand mean)."""
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    return float(1 - np.sum((y - yhat) ** 2) / np.sum((y - y.mean()) ** 2))


def rho_oos(y, yhat, groups) -> float:
    """Mean over groups of the within-group Spearman correlation of ``yhat`` and ``y`` (a group
    whose predictions are all equal counts 0)."""
    y, yhat, groups = np.asarray(y, float), np.asarray(yhat, float), np.asarray(groups)
    rhos = []
    for g in np.unique(groups):
        m = groups == g
        rho = stats.spearman(yhat[m], y[m]) if np.ptp(yhat[m]) > 0 and np.ptp(y[m]) > 0 else 0.0
        rhos.append(0.0 if not np.isfinite(rho) else rho)
    return float(np.mean(rhos))


def scores(X, y, groups) -> dict[str, float]:
    """``R²_oos`` and ``ρ_oos`` of the calibration on features ``X``."""
    yhat = loro_predictions(X, y, groups)
    return {"r2": r2_oos(y, yhat), "rho": rho_oos(y, yhat, groups)}


@dataclass
class Interval:
    """An estimate with a delete-one-group jackknife SE and t interval (``df`` = groups − 1)."""

    value: float
    se: float
    lo: float
    hi: float
    df: int


def jackknife(statistic, groups, level: float = 0.95) -> Interval:
    """``statistic(mask)`` on all units, and its delete-one-group jackknife: the SE from the
    statistic recomputed with each group removed, and the t interval with (groups − 1)
    degrees of freedom."""
    from scipy.stats import t

    groups = np.asarray(groups)
    labels = np.unique(groups)
    R = labels.size
    full = float(statistic(np.ones(groups.size, bool)))
    loo = np.array([statistic(groups != g) for g in labels], float)
    se = float(np.sqrt((R - 1) / R * np.sum((loo - loo.mean()) ** 2)))
    q = float(t.ppf(1 - (1 - level) / 2, R - 1))
    return Interval(full, se, full - q * se, full + q * se, R - 1)


def incremental_r2(X_base, X_extra, y, groups) -> float:
    """``R²_oos`` of the base features plus the extra ones, minus that of the base alone."""
    X_full = np.column_stack([X_base, X_extra])
    return (r2_oos(y, loro_predictions(X_full, y, groups))
            - r2_oos(y, loro_predictions(X_base, y, groups)))


def freedman_lane(X_base, X_extra, y, groups, n_perm: int, seed: int) -> tuple[float, float]:
    """One-sided Freedman–Lane test of the extra features' incremental ``R²_oos``.

    The reduced model (base features) is fitted on all units; its residuals are permuted
    across units and added back to its fitted values, and the statistic is recomputed on each
    permuted outcome. Returns (statistic, p) with ``p = (1 + #{perm ≥ stat}) / (1 + n_perm)``.
    """
    X_base, y = np.asarray(X_base, float), np.asarray(y, float)
    stat = incremental_r2(X_base, X_extra, y, groups)
    fitted = ols_fit_predict(X_base, y, X_base)
    resid = y - fitted
    rng = np.random.default_rng(seed)
    count = 0
    for _ in range(n_perm):
        y_perm = fitted + rng.permutation(resid)
        count += incremental_r2(X_base, X_extra, y_perm, groups) >= stat
    return stat, (1 + count) / (1 + n_perm)


def matched_pairs(stage, groups, caliper: float) -> list[tuple[int, int]]:
    """Pairs of units from different groups whose ``stage`` differs by at most ``caliper``:
    greedily, the closest pair first (ties by index), each unit in at most one pair."""
    stage, groups = np.asarray(stage, float), np.asarray(groups)
    cand = sorted((abs(stage[i] - stage[j]), i, j) for i in range(stage.size)
                  for j in range(i + 1, stage.size)
                  if groups[i] != groups[j] and abs(stage[i] - stage[j]) <= caliper)
    used: set[int] = set()
    pairs = []
    for _, i, j in cand:
        if i not in used and j not in used:
            pairs.append((i, j))
            used.update((i, j))
    return pairs


def sign_test(dx, dy) -> tuple[int, int, float]:
    """How many pairs have ``sign(dx) == sign(dy)`` out of those where neither is 0, and the
    one-sided binomial p-value of that many agreements or more under p = 1/2."""
    from scipy.stats import binom

    dx, dy = np.asarray(dx, float), np.asarray(dy, float)
    ok = (dx != 0) & (dy != 0)
    n = int(ok.sum())
    agree = int(np.sum(np.sign(dx[ok]) == np.sign(dy[ok])))
    return agree, n, float(binom.sf(agree - 1, n, 0.5)) if n else float("nan")


# -------------------------------------------- rank-based, within-group tests (issue 30)
# Checkpoints of one recipe share a recipe effect, so a permutation across all checkpoints
# has the wrong size; these tests permute within groups, and the out-of-group score is on
# ranks, so that neither a recipe effect nor a predictor's functional form passes for information.
def within_group_permutation(groups, rng) -> np.ndarray:
    """An index array that permutes units within each group (units keep their group)."""
    groups = np.asarray(groups)
    idx = np.arange(groups.size)
    out = idx.copy()
    for g in np.unique(groups):
        members = idx[groups == g]
        out[members] = rng.permutation(members)
    return out


def _covariates(z, groups, degree: int = 3) -> np.ndarray:
    """The reduced model of :func:`partial_association`: an intercept, the powers 1..``degree``
    of each column of ``z`` (standardised) and one indicator per group but the first."""
    groups = np.asarray(groups)
    z = np.asarray(z, float).reshape(groups.size, -1)
    cols = [np.ones(groups.size)]
    for c in z.T:
        u = (c - c.mean()) / (c.std() or 1.0)
        cols += [u ** k for k in range(1, degree + 1)]
    cols += [(groups == g).astype(float) for g in np.unique(groups)[1:]]
    return np.column_stack(cols)


def _residual(A: np.ndarray, v: np.ndarray) -> np.ndarray:
    beta, *_ = np.linalg.lstsq(A, v, rcond=None)
    return v - A @ beta


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    den = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b / den) if den > 0 else 0.0


def partial_association(x, y, z, groups, degree: int = 3) -> float:
    """The partial correlation of ``x`` with ``y`` given ``z`` within groups: ``x`` and ``y``
    are each residualised on an intercept, a polynomial of degree ``degree`` in ``z`` (one
    column or several) and group indicators, and correlated. In [−1, 1]; 0 when either
    residual is identically 0. (Not on ranks: when ``x`` and ``y`` both depend on ``z``, the
    ranks over all units are non-linear in ``z`` and a polynomial in its ranks leaves part of
    that dependence in both residuals; in notebook 11's registered simulation a rank version
    rejected a true null at 0.08 to 0.13 instead of 0.05.)"""
    A = _covariates(z, groups, degree)
    return _corr(_residual(A, np.asarray(x, float)), _residual(A, np.asarray(y, float)))


def partial_residuals(x, y, z, groups, degree: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The two residuals whose correlation is :func:`partial_association` (for a figure)."""
    A = _covariates(z, groups, degree)
    return _residual(A, np.asarray(x, float)), _residual(A, np.asarray(y, float))


def partial_association_test(x, y, z, groups, n_perm: int, seed: int,
                             degree: int = 3) -> tuple[float, float]:
    """One-sided Freedman–Lane test of :func:`partial_association` > 0, permuting within
    groups: ``y`` is split into the reduced model's fit (``z`` and groups) and residuals, the
    residuals are permuted within groups and added back, and the statistic is recomputed.
    Returns (statistic, p), ``p = (1 + #{perm ≥ stat}) / (1 + n_perm)``."""
    if n_perm < 1:
        raise ValueError(f"n_perm must be ≥ 1, got {n_perm}")
    A = _covariates(z, groups, degree)
    rx = _residual(A, np.asarray(x, float))
    resid = _residual(A, np.asarray(y, float))
    stat = _corr(rx, resid)
    # the fitted part of a permuted outcome is removed again by the residualisation, so only
    # the permuted residuals matter: project them off the reduced model's columns
    Q, _ = np.linalg.qr(A)
    rng = np.random.default_rng(seed)
    count = 0
    for _ in range(n_perm):
        e = resid[within_group_permutation(groups, rng)]
        count += _corr(rx, e - Q @ (Q.T @ e)) >= stat - 1e-12
    return stat, (1 + count) / (1 + n_perm)


def fisher_interval(r: float, n: int, n_covariates: int = 0, level: float = 0.95) -> tuple[float, float]:
    """The Fisher-z interval of a (partial) correlation ``r`` from ``n`` units after
    ``n_covariates`` covariates: ``tanh(atanh r ± q/√(n − n_covariates − 3))``; always inside
    [−1, 1]. NaNs when ``n − n_covariates ≤ 3``."""
    from scipy.stats import norm

    dof = n - n_covariates - 3
    if dof <= 0 or not np.isfinite(r):
        return float("nan"), float("nan")
    z = np.arctanh(np.clip(r, -1 + 1e-12, 1 - 1e-12))
    q = float(norm.ppf(1 - (1 - level) / 2)) / np.sqrt(dof)
    return float(np.tanh(z - q)), float(np.tanh(z + q))


def holm(pvalues, alpha: float = 0.05) -> list[bool]:
    """Holm's step-down rejections of a family of p-values (NaN never rejects): sort, reject
    while ``p_(i) ≤ alpha / (m − i)``, stop at the first that is not."""
    p = np.asarray(pvalues, float)
    m = p.size
    reject = [False] * m
    for i, j in enumerate(np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")):
        if not p[j] <= alpha / (m - i):
            break
        reject[j] = True
    return reject


def holm_adjusted(pvalues) -> list[float]:
    """Holm-adjusted p-values: ``max_{j ≤ i} min(1, (m − j + 1) p_(j))`` in sorted order; a
    hypothesis is rejected at ``alpha`` exactly when its adjusted p-value is at most ``alpha``
    (:func:`holm`). NaN stays NaN."""
    p = np.asarray(pvalues, float)
    m = p.size
    out = np.full(m, np.nan)
    running = 0.0
    for i, j in enumerate(np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")):
        if np.isnan(p[j]):
            break
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out.tolist()


def split_half_reliability(values, groups=None) -> tuple[float, float]:
    """The reliability of unit means over repeated measurements ``values`` (units, reps): the
    Pearson correlation ``r`` of the means of the first and second halves of the repetitions
    (in their order), and the Spearman–Brown reliability of the mean of all of them,
    ``2r/(1 + r)``. With ``groups``, each half is first centred within its group (the
    reliability of differences within groups, which a within-group test reads)."""
    v = np.asarray(values, float)
    if v.ndim != 2 or v.shape[1] < 2:
        raise ValueError(f"values must be (units, repetitions) with at least 2 repetitions, got {v.shape}")
    h = v.shape[1] // 2
    a, b = v[:, :h].mean(1), v[:, h:2 * h].mean(1)
    if groups is not None:
        groups = np.asarray(groups)
        for g in np.unique(groups):
            m = groups == g
            a[m] -= a[m].mean()
            b[m] -= b[m].mean()
    r = stats.pearson(a, b)
    return r, 2 * r / (1 + r)


def spearman_brown(reliability: float, factor: float) -> float:
    """The reliability of a mean of ``factor`` times as many repetitions."""
    return factor * reliability / (1 + (factor - 1) * reliability)


def repetitions_for(reliability: float, n: int, target: float) -> float:
    """How many repetitions a mean needs to reach ``target`` reliability, given ``reliability``
    at ``n`` repetitions (Spearman–Brown solved for the factor); inf when it is ≤ 0."""
    if not reliability > 0:
        return float("inf")
    return n * target * (1 - reliability) / (reliability * (1 - target))


def disattenuate(r: float, reliability: float) -> float:
    """A correlation with an exact predictor divided by the outcome's highest attainable
    correlation, ``√reliability`` (NaN when the reliability is not positive)."""
    return float(r / np.sqrt(reliability)) if reliability > 0 else float("nan")


def rank_score_oos(x, y, groups) -> float:
    """An out-of-group score that compares information, not functional form: for each group,
    the within-group Spearman correlation of ``x`` and ``y``, signed by the direction the
    other groups show (the sign of their mean within-group Spearman; + when it is 0);
    averaged over groups. In [−1, 1]."""
    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    labels = np.unique(groups)
    within = {}
    for g in labels:
        m = groups == g
        rho = stats.spearman(x[m], y[m]) if np.ptp(x[m]) > 0 and np.ptp(y[m]) > 0 else 0.0
        within[g] = rho if np.isfinite(rho) else 0.0
    scores = [(1.0 if np.mean([within[h] for h in labels if h != g]) >= 0 else -1.0) * within[g]
              for g in labels]
    return float(np.mean(scores))


def jackknife_bounded(statistic, groups, level: float = 0.95) -> Interval:
    """:func:`jackknife` of a statistic in [−1, 1] on the Fisher-z scale, mapped back: the
    interval cannot leave [−1, 1]. ``se`` is on the z scale."""
    def z(mask):
        return float(np.arctanh(np.clip(statistic(mask), -1 + 1e-9, 1 - 1e-9)))

    iv = jackknife(z, groups, level)
    return Interval(float(statistic(np.ones(np.asarray(groups).size, bool))), iv.se,
                    float(np.tanh(iv.lo)), float(np.tanh(iv.hi)), iv.df)


def jackknife_r2(statistic, groups, level: float = 0.95) -> Interval:
    """:func:`jackknife` of an R² (at most 1, unbounded below) on the scale ``log(1 − R²)``,
    mapped back: the interval cannot exceed 1. ``se`` is on the log scale."""
    def u(mask):
        return float(np.log(max(1.0 - statistic(mask), 1e-12)))

    iv = jackknife(u, groups, level)
    return Interval(float(statistic(np.ones(np.asarray(groups).size, bool))), iv.se,
                    float(1 - np.exp(iv.hi)), float(1 - np.exp(iv.lo)), iv.df)
