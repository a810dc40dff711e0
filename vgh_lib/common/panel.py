"""The predictor panel: every cheap pre-RL measurement that people use to decide where RL will
pay off, from one evaluation (issue 19; book/theory.md §4 for ``S``, ``H`` and ``I``).

One implementation serves the toy study (``09_what_predicts_rl_gain``), ``vgh probe`` and the
TRL callback. With an exact-match reward, a prompt's success probability ``p`` under sampling
at temperature τ is the teacher-forced probability of its answer, so every predictor below
except ``S`` (and ``I``) is an exact function of the per-prompt log-probabilities ``log p``:

==================  =====================================================================
``pass@1``          ``E_x p`` (training stage; either sign may win)
``H``               ``E_x[pass@k − pass@1]`` with ``pass@k = 1 − (1 − p)^k``
``learnability``    ``E_x p(1 − p)``, the reward variance (Foster & Foerster 2025)
``reward std``      ``E_x sqrt(p(1 − p))``
``non-degenerate``  ``E_x[1 − p^G − (1 − p)^G]``, the share of GRPO groups of size G whose
                    rewards are not all equal (DAPO's dynamic-sampling filter)
``coverage``        ``E_x[1 − (1 − p)^K]`` at a large K (64): pass@K as a ceiling
``NLL``             ``E_x[−log p]``, the negative log-likelihood of the correct answers
``S``               ``‖∇J‖`` from independent update estimates (:func:`impact.signal`)
``I``               ``S·H``, the paper's value impact
==================  =====================================================================

Standard errors are over prompts (the prompts are a sample of the task); those of ``S`` and
``I`` are delete-one-batch jackknifes (:func:`impact_jackknife_se`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vgh_lib.common import impact, stats

PANEL = ("I", "S", "H", "learnability", "reward std", "non-degenerate", "coverage", "pass@1", "NLL")
"""The panel's predictors that one evaluation of a checkpoint gives (stage by step and the
short-RL run are measured by the study itself, not from an evaluation)."""

EXACT = ("H", "learnability", "reward std", "non-degenerate", "coverage", "pass@1", "NLL")
"""The predictors that are exact functions of the per-prompt success probabilities."""


def per_prompt(logp, group_size: int, k: int, coverage_k: int = 64) -> dict[str, np.ndarray]:
    """Each :data:`EXACT` predictor's per-prompt term, from per-prompt log success
    probabilities ``logp`` (≤ 0); the predictor is the mean of its term over prompts."""
    logp = np.asarray(logp, float)
    if logp.ndim != 1 or logp.size == 0 or np.any(logp > 1e-9) or np.any(np.isnan(logp)):
        raise ValueError("logp must be a non-empty 1-D array of log-probabilities (≤ 0)")
    p = np.exp(np.minimum(logp, 0.0))
    q = 1 - p
    return {"H": (1 - q ** k) - p,
            "learnability": p * q,
            "reward std": np.sqrt(p * q),
            "non-degenerate": 1 - p ** group_size - q ** group_size,
            "coverage": 1 - q ** coverage_k,
            "pass@1": p,
            "NLL": -logp}


def impact_jackknife_se(gram, headroom_per_prompt) -> float:
    """Standard error of ``I = S·H`` by deleting one batch at a time from *both* factors.

    When S and H come from the same prompts (batch ``b`` holds the ``b``-th equal share of
    them), their errors are correlated; removing a whole batch from the Gram matrix and its
    prompts from the headroom keeps that correlation, which a delta method for independent
    factors would drop. NaN with fewer than 3 batches.
    """
    gram = np.asarray(gram, float)
    h = np.asarray(headroom_per_prompt, float)
    M = gram.shape[0]
    if M < 3:
        return float("nan")
    per = h.size // M
    keep = np.arange(M)
    loo = []
    for b in range(M):
        rest = keep[keep != b]
        s_b = math.sqrt(max(0.0, stats.u_statistic_sq_norm(gram, rest)))
        h_b = float(np.delete(h, np.s_[b * per:(b + 1) * per]).mean())
        loo.append(s_b * h_b)
    loo = np.array(loo)
    return float(np.sqrt((M - 1) / M * np.sum((loo - loo.mean()) ** 2)))


def mean_se(x) -> tuple[float, float]:
    """Mean and its standard error (NaN with one value)."""
    x = np.asarray(x, float)
    return float(x.mean()), (float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan"))


@dataclass
class Panel:
    """Every :data:`PANEL` predictor of one checkpoint, with its standard error and the seconds
    of the measurements it needs (``cost``)."""

    values: dict[str, float]
    ses: dict[str, float]
    cost: dict[str, float]

    def as_dict(self) -> dict:
        def clean(v):
            return None if v is None or not np.isfinite(v) else float(v)

        return {name: {"value": clean(self.values[name]), "se": clean(self.ses[name]),
                       "seconds": clean(self.cost[name])} for name in PANEL}


def panel(logp, gram, group_size: int, k: int, coverage_k: int = 64,
          eval_seconds: float = float("nan"), signal_seconds: float = float("nan")) -> Panel:
    """The whole panel from per-prompt log success probabilities ``logp`` and the Gram matrix
    of ``S``'s batch estimates. When ``gram``'s batches were drawn from the same prompts as
    ``logp`` (batch ``b`` the ``b``-th equal share, as in ``vgh probe``), ``I``'s SE keeps the
    correlation of its factors; otherwise (notebook 09, whose batches are drawn from all
    training prompts) it is still a delete-one-group jackknife, with groups that pair a batch
    with an arbitrary share of the prompts. ``eval_seconds`` and
    ``signal_seconds`` are the costs of the exact evaluation and of the signal's batches."""
    terms = per_prompt(logp, group_size, k, coverage_k)
    values, ses, cost = {}, {}, {}
    for name, t in terms.items():
        values[name], ses[name] = mean_se(t)
        cost[name] = eval_seconds
    values["S"], ses["S"] = impact.signal(gram)
    cost["S"] = signal_seconds
    values["I"] = values["S"] * values["H"]
    ses["I"] = impact_jackknife_se(gram, terms["H"])
    cost["I"] = eval_seconds + signal_seconds
    return Panel(values, ses, cost)
