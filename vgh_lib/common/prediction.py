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
