"""The Theorem 1 experiment (book/theory.md §1, reconstructed): BPTT costates are value
gradients in expectation.

Each sub-experiment is a function with a typed result; :func:`run` composes them in a
fixed order, because the LQR ones share one noise stream (``torch.Generator(seed)``):

* :func:`lqr_problem`: the LQR system, its policy, ``x_0`` and the matrices ``P_t``.
* :func:`start_costates` then :func:`lqr_mean_costate`: the mean of ``λ_0`` over ``N``
  noise draws at a fixed ``x_0`` against the closed form ``∇V_0(x_0) = −2P_0x_0``.
* :func:`convergence`: the error of that mean against ``N`` on log-log axes (slope −1/2).
* :func:`step_regression`: at every step ``t``, the regression of ``λ_t`` on ``x_t``
  against ``−2P_t``, and autograd against the hand-written adjoint recursion.
* :func:`nonlinear_costate_vs_fd`: on a nonlinear system (tanh plant or damped pendulum),
  the mean ``λ_0`` against a central finite difference of the Monte Carlo value with
  common random numbers, drawn from noise independent of the costate sample.

Each identity is judged against the run's own Monte Carlo error: the z-score
``‖discrepancy‖ / sqrt(Σ SE²)`` (:func:`vgh_lib.common.stats.norm_z`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vgh_lib.common import stats
from vgh_lib.harness.params import PROFILE_NAMES, NotebookParams, spec
from vgh_lib.rollout import dynamics as ro

FD_SEED_OFFSET = 1_000_003  # the finite-difference noise is seeded with seed + this


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
    """Parameters of ``01_costates_are_value_gradients`` (book/theory.md §1)."""

    n_rollouts: int = spec(500_000, lo=1_000, hi=5_000_000, help="largest number of rollouts N")


# ------------------------------------------------------------------------ the LQR problem
@dataclass(frozen=True)
class LQRProblem:
    """An LQR system with a fixed linear policy, a start state and its closed-form values."""

    system: ro.LQRSystem
    policy: ro.LinearPolicy
    x0: torch.Tensor      # (n,)
    sigma: float
    horizon: int
    P: torch.Tensor       # (T+1, n, n): V_t(x) = −(xᵀP_t x + c_t)

    @property
    def K(self) -> torch.Tensor:
        """The policy gain, detached."""
        return self.policy.K.detach()

    @property
    def value_gradient(self) -> torch.Tensor:
        """``∇V_0(x_0) = −2P_0x_0``, (n,)."""
        return ro.lqr_value_gradient(self.P[0], self.x0)


def lqr_problem(seed: int, n_state: int, n_action: int, sigma: float, horizon: int) -> LQRProblem:
    """The random LQR problem of ``seed`` (:func:`vgh_lib.rollout.dynamics.make_problem`)."""
    system, policy, x0 = ro.make_problem("lqr", n_state, n_action, seed)
    P, _ = ro.lqr_value_matrices(system, policy.K.detach(), sigma, horizon)
    return LQRProblem(system, policy, x0, sigma, horizon, P)


def start_costates(problem: LQRProblem, n_rollouts: int, gen: torch.Generator) -> torch.Tensor:
    """``λ_0`` of ``n_rollouts`` rollouts from ``problem.x0``, noise from ``gen``; (N, n)."""
    return ro.costate0_samples(problem.system, problem.policy, problem.x0, problem.sigma,
                               problem.horizon, n_rollouts, gen)


# ------------------------------------------------------------------ sub-experiment results
@dataclass
class LQRCostateResult:
    """The mean costate at ``x_0`` against the closed form (Theorem 1 at ``t = 0``)."""

    costate_mean: np.ndarray    # (n,) mean λ_0
    costate_se: np.ndarray      # (n,) its standard errors
    analytic: np.ndarray        # (n,) −2P_0x_0
    rel_error: float            # ‖mean λ_0 − ∇V_0‖/‖∇V_0‖
    expected_rel_error: float   # sqrt(tr Cov(λ_0)/N)/‖∇V_0‖, the Monte Carlo scale
    z: float                    # ‖mean λ_0 − ∇V_0‖ / sqrt(Σ SE²)


@dataclass
class ConvergenceResult:
    """The error of the mean of ``N`` costates against ``N`` (Monte Carlo rate ``N^(-1/2)``)."""

    sizes: np.ndarray   # N values
    errors: np.ndarray  # RMS relative error of the mean over disjoint batches of each N
    slope: float        # fitted log-log slope of errors against sizes
    slope_se: float     # its standard error


@dataclass
class StepFitResult:
    """At every step ``t``: the least-squares ``M_t`` in ``λ_t ≈ M_t x_t`` against ``−2P_t``."""

    fit: np.ndarray          # (T+1, n, n) fitted M_t
    exact: np.ndarray        # (T+1, n, n) −2P_t
    rel_error: np.ndarray    # (T+1,) ‖M_t + 2P_t‖_F / ‖2P_t‖_F
    adjoint_max_rel: float   # max |autograd λ − adjoint-recursion λ| / max |λ|


@dataclass
class NonlinearCostateResult:
    """The mean costate at ``x_0`` against a finite difference of the Monte Carlo value."""

    system: str
    costate_mean: np.ndarray  # (n,) mean λ_0
    costate_se: np.ndarray    # (n,)
    fd: np.ndarray            # (n,) finite-difference gradient of the MC value
    fd_se: np.ndarray         # (n,) its standard errors (between independent batches)
    cosine: float             # cosine of costate_mean with fd (descriptive)
    z: float                  # ‖mean λ_0 − FD‖ / sqrt(Σ SE_λ² + Σ SE_FD²)


@dataclass
class Theorem1Result:
    """Everything the notebook plots and claims, one field per sub-experiment."""

    lqr: LQRCostateResult
    convergence: ConvergenceResult
    steps: StepFitResult
    nonlinear: NonlinearCostateResult


# ------------------------------------------------------------------------- sub-experiments
def lqr_mean_costate(lam0: torch.Tensor, analytic: torch.Tensor) -> LQRCostateResult:
    """Theorem 1 at ``t = 0``: ``E[λ_0 | x_0] = ∇V_0(x_0)``, from samples ``lam0`` (N, n)."""
    n = lam0.shape[0]
    mean = lam0.mean(0)
    se = lam0.std(0) / np.sqrt(n)
    return LQRCostateResult(
        costate_mean=mean.numpy(), costate_se=se.numpy(), analytic=analytic.numpy(),
        rel_error=stats.relative_error(mean, analytic),
        expected_rel_error=float(torch.sqrt(lam0.var(0).sum() / n) / analytic.norm()),
        z=stats.norm_z(mean - analytic, se))


def convergence(lam0: torch.Tensor, analytic: torch.Tensor, n_sizes: int = 12) -> ConvergenceResult:
    """RMS error of the mean of disjoint batches of ``N`` samples, and its log-log slope.

    The grid stops at ``N_max/8`` so that every point averages at least 8 batches.
    """
    sizes = stats.log_spaced_sizes(10, max(lam0.shape[0] // 8, 20), n_sizes)
    errors = stats.batch_mean_errors(lam0, analytic, sizes)
    slope, slope_se = stats.loglog_slope(sizes, errors)
    return ConvergenceResult(np.asarray(sizes), errors, slope, slope_se)


def step_regression(problem: LQRProblem, n_rollouts: int, gen: torch.Generator) -> StepFitResult:
    """Every step ``t``: ``λ_t = −2P_t x_t`` + (zero-mean terms in future noise), so the
    least-squares fit of ``λ_t`` on ``x_t`` recovers ``−2P_t``. Random starts (from ``gen``,
    then the noise) make ``x_0`` vary too. Also checks autograd against the adjoint
    recursion of §1 written out by hand (equal to float64 rounding)."""
    sys_, policy, sigma = problem.system, problem.policy, problem.sigma
    starts = torch.randn(n_rollouts, problem.x0.shape[0], generator=gen, dtype=ro.DTYPE)
    eps = ro.sample_noise(problem.horizon, n_rollouts, sys_.n_action, gen)
    with torch.no_grad():
        traj = ro.rollout(sys_, policy, starts, eps, sigma)
    lam = ro.costates(sys_, policy, starts, eps, sigma)  # (T+1, B, n)
    fits = torch.linalg.lstsq(traj.states.detach(), lam).solution.transpose(1, 2)  # λ ≈ x Mᵀ
    exact = -2.0 * problem.P
    rel = torch.linalg.matrix_norm(fits - exact) / torch.linalg.matrix_norm(exact)
    adjoint = ro.lqr_adjoint_costates(sys_, problem.K, traj)
    return StepFitResult(fit=fits.numpy(), exact=exact.numpy(), rel_error=rel.numpy(),
                         adjoint_max_rel=float((lam - adjoint).abs().max() / lam.abs().max()))


def nonlinear_costate_vs_fd(system: str, n_state: int, n_action: int, seed: int, sigma: float,
                            horizon: int, n_rollouts: int, gen: torch.Generator,
                            fd_step: float = 1e-4, fd_batches: int = 16) -> NonlinearCostateResult:
    """The mean ``λ_0`` of ``n_rollouts`` rollouts (noise from ``gen``) on ``system`` against
    the finite-difference value gradient, computed in ``fd_batches`` independent batches
    (noise seeded with ``seed + FD_SEED_OFFSET``) whose spread is its standard error."""
    sys_, policy, x0 = ro.make_problem(system, n_state, n_action, seed)
    lam0 = ro.costate0_samples(sys_, policy, x0, sigma, horizon, n_rollouts, gen)
    fd_gen = torch.Generator().manual_seed(seed + FD_SEED_OFFSET)
    per = n_rollouts // fd_batches
    fds = torch.stack([ro.fd_value_gradient(sys_, policy, x0, sigma, horizon, per, fd_gen, fd_step)
                       for _ in range(fd_batches)])
    fd, fd_se = fds.mean(0), fds.std(0) / np.sqrt(fd_batches)
    mean = lam0.mean(0)
    se = lam0.std(0) / np.sqrt(n_rollouts)
    return NonlinearCostateResult(
        system=system, costate_mean=mean.numpy(), costate_se=se.numpy(),
        fd=fd.numpy(), fd_se=fd_se.numpy(), cosine=stats.cosine(mean, fd),
        z=stats.norm_z(mean - fd, torch.sqrt(se ** 2 + fd_se ** 2)))


def run(*, seed: int, n_state: int, n_action: int, horizon: int, sigma: float,
        n_rollouts: int, system: str, fd_step: float = 1e-4,
        n_step_rollouts: int = 20000, n_sizes: int = 12, fd_batches: int = 16) -> Theorem1Result:
    """Run the Theorem 1 experiment. One noise stream, ``torch.Generator(seed)``, feeds the
    sub-experiments in this order: start costates, step regression, nonlinear costates."""
    problem = lqr_problem(seed, n_state, n_action, sigma, horizon)
    analytic = problem.value_gradient
    gen = torch.Generator().manual_seed(seed)
    lam0 = start_costates(problem, n_rollouts, gen)  # (N, n)
    lqr = lqr_mean_costate(lam0, analytic)
    conv = convergence(lam0, analytic, n_sizes)
    steps = step_regression(problem, n_step_rollouts, gen)
    nonlinear = nonlinear_costate_vs_fd(system, n_state, n_action, seed, sigma, horizon,
                                        n_rollouts, gen, fd_step, fd_batches)
    return Theorem1Result(lqr=lqr, convergence=conv, steps=steps, nonlinear=nonlinear)
