"""The Theorem 1 experiment (THEORY.md §1, reconstructed): BPTT costates are value
gradients in expectation.

* LQR: the mean of ``λ_0`` over ``N`` noise draws at a fixed ``x_0`` against the closed
  form ``∇V_0(x_0) = −2P_0x_0``; the error against ``N`` on log-log axes (slope −1/2);
  and, at every step ``t``, the regression of ``λ_t`` on ``x_t`` against ``−2P_t``.
* A nonlinear system (tanh plant or damped pendulum): the mean ``λ_0`` against a central
  finite difference of the Monte Carlo value with common random numbers, drawn from
  noise independent of the costate sample.
* Each identity is judged against the run's own Monte Carlo error: the z-score
  ``‖discrepancy‖ / sqrt(Σ SE²)`` (:func:`vgh_lib.common.stats.norm_z`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vgh_lib.common import stats
from vgh_lib.harness.params import PROFILE_NAMES, NotebookParams, spec
from vgh_lib.rollout import dynamics as ro


@dataclass(frozen=True)
class RolloutParams(NotebookParams):
    """Parameters shared by the differentiable-rollout notebooks (01 and 02)."""

    seed: int = spec(0, lo=0, hi=2**31 - 1, help="seeds the systems, the policies and all noise")
    profile: str = spec("default", choices=PROFILE_NAMES, help="run profile (set by `vgh run --profile`)")
    n_state: int = spec(4, lo=1, hi=8, help="state dimension n (LQR and tanh plant)")
    n_action: int = spec(2, lo=1, hi=4, help="action dimension m (LQR and tanh plant)")
    horizon: int = spec(20, lo=1, hi=50, help="number of steps T")
    sigma: float = spec(0.5, lo=0.01, hi=1.0, help="action noise scale σ")
    system: str = spec("tanh", choices=("tanh", "pendulum"), help="the nonlinear system")


@dataclass(frozen=True)
class Theorem1Params(RolloutParams):
    """Parameters of ``01_costates_are_value_gradients`` (THEORY.md §1)."""

    n_rollouts: int = spec(500_000, lo=1_000, hi=5_000_000, help="largest number of rollouts N")


@dataclass
class Theorem1Result:
    """Everything the notebook plots and claims. Arrays are NumPy."""

    sizes: np.ndarray            # N values of the convergence curve
    errors: np.ndarray           # RMS relative error of mean λ_0 at each N
    slope: float                 # fitted log-log slope of errors against sizes
    slope_se: float              # its standard error
    rel_error: float             # ‖mean λ_0 − ∇V_0‖/‖∇V_0‖ at the largest N
    expected_rel_error: float    # sqrt(tr Cov(λ_0)/N)/‖∇V_0‖, the Monte Carlo scale
    costate_mean: np.ndarray     # (n,) mean λ_0 at the largest N
    costate_se: np.ndarray       # (n,) its standard errors
    analytic: np.ndarray         # (n,) −2P_0x_0
    step_fit: np.ndarray         # (T+1, n, n) least-squares M_t in λ_t ≈ M_t x_t
    step_exact: np.ndarray       # (T+1, n, n) −2P_t
    step_rel_error: np.ndarray   # (T+1,) ‖M_t + 2P_t‖_F / ‖2P_t‖_F
    adjoint_max_rel: float       # max |autograd λ − adjoint-recursion λ| / max |λ|
    nonlinear_system: str
    nonlinear_costate: np.ndarray   # (n,) mean λ_0 on the nonlinear system
    nonlinear_costate_se: np.ndarray
    nonlinear_fd: np.ndarray        # (n,) finite-difference gradient of the MC value
    nonlinear_fd_se: np.ndarray     # (n,) its standard errors (between independent batches)
    nonlinear_cosine: float
    lqr_z: float = float("nan")        # ‖mean λ_0 − ∇V_0‖ / sqrt(Σ SE²)
    nonlinear_z: float = float("nan")  # ‖mean λ_0 − FD‖ / sqrt(Σ SE_λ² + Σ SE_FD²)


def run(*, seed: int, n_state: int, n_action: int, horizon: int, sigma: float,
        n_rollouts: int, system: str, fd_step: float = 1e-4,
        n_step_rollouts: int = 20000, n_sizes: int = 12, fd_batches: int = 16) -> Theorem1Result:
    """Run the Theorem 1 experiment. Noise streams are derived from ``seed``."""
    # LQR: Theorem 1: E[λ_0 | x_0] = ∇V_0(x_0) = −2 P_0 x_0
    lqr, policy, x0 = ro.make_problem("lqr", n_state, n_action, seed)
    K = policy.K.detach()
    P, _ = ro.lqr_value_matrices(lqr, K, sigma, horizon)
    analytic = ro.lqr_value_gradient(P[0], x0)
    gen = torch.Generator().manual_seed(seed)
    lam0 = ro.costate0_samples(lqr, policy, x0, sigma, horizon, n_rollouts, gen)  # (N, n)
    mean = lam0.mean(0)
    se = lam0.std(0) / np.sqrt(n_rollouts)
    rel_error = stats.relative_error(mean, analytic)
    expected = float(torch.sqrt(lam0.var(0).sum() / n_rollouts) / analytic.norm())

    # Convergence: disjoint batches of size N, RMS error, slope on log-log axes.
    # The fit stops at N_max/8 so that every point averages at least 8 batches.
    sizes = stats.log_spaced_sizes(10, max(n_rollouts // 8, 20), n_sizes)
    errors = stats.batch_mean_errors(lam0, analytic, sizes)
    slope, slope_se = stats.loglog_slope(sizes, errors)

    # Every step t: λ_t = −2P_t x_t + (zero-mean terms in future noise), so the
    # least-squares fit of λ_t on x_t recovers −2P_t. Random starts make x_0 vary too.
    starts = torch.randn(n_step_rollouts, n_state, generator=gen, dtype=ro.DTYPE)
    eps = ro.sample_noise(horizon, n_step_rollouts, n_action, gen)
    with torch.no_grad():
        traj = ro.rollout(lqr, policy, starts, eps, sigma)
    lam = ro.costates(lqr, policy, starts, eps, sigma)  # (T+1, B, n)
    X = traj.states.detach()
    fits = torch.linalg.lstsq(X, lam).solution.transpose(1, 2)  # (T+1, n, n): λ ≈ x Mᵀ
    exact = -2.0 * P
    step_rel = torch.linalg.matrix_norm(fits - exact) / torch.linalg.matrix_norm(exact)
    # The adjoint recursion of §1 written out by hand must equal autograd (float64 rounding).
    adjoint = ro.lqr_adjoint_costates(lqr, K, traj)
    adjoint_max_rel = float((lam - adjoint).abs().max() / lam.abs().max())

    # Nonlinear: mean costate vs finite difference of the MC value (independent noise).
    nl, nl_policy, nl_x0 = ro.make_problem(system, n_state, n_action, seed)
    nl_lam0 = ro.costate0_samples(nl, nl_policy, nl_x0, sigma, horizon, n_rollouts, gen)
    # The FD reference in ``fd_batches`` independent batches: their spread is its standard error.
    fd_gen = torch.Generator().manual_seed(seed + 1_000_003)
    per = n_rollouts // fd_batches
    fds = torch.stack([ro.fd_value_gradient(nl, nl_policy, nl_x0, sigma, horizon, per, fd_gen,
                                            fd_step) for _ in range(fd_batches)])
    fd, fd_se = fds.mean(0), fds.std(0) / np.sqrt(fd_batches)
    nl_mean = nl_lam0.mean(0)
    nl_se = nl_lam0.std(0) / np.sqrt(n_rollouts)

    return Theorem1Result(
        sizes=np.asarray(sizes), errors=errors, slope=slope, slope_se=slope_se,
        rel_error=rel_error, expected_rel_error=expected,
        costate_mean=mean.numpy(), costate_se=se.numpy(), analytic=analytic.numpy(),
        step_fit=fits.numpy(), step_exact=exact.numpy(), step_rel_error=step_rel.numpy(),
        adjoint_max_rel=adjoint_max_rel,
        nonlinear_system=system, nonlinear_costate=nl_mean.numpy(),
        nonlinear_costate_se=nl_se.numpy(),
        nonlinear_fd=fd.numpy(), nonlinear_fd_se=fd_se.numpy(),
        nonlinear_cosine=stats.cosine(nl_mean, fd),
        lqr_z=stats.norm_z(mean - analytic, se),
        nonlinear_z=stats.norm_z(nl_mean - fd, torch.sqrt(nl_se ** 2 + fd_se ** 2)),
    )
