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
from typing import ClassVar

import numpy as np
import torch

from vgh_lib.common import stats
from vgh_lib.harness.claims import ClaimSpec, Measured
from vgh_lib.harness.params import NotebookParams, spec
from vgh_lib.rollout import dynamics as ro

FD_SEED_OFFSET = 1_000_003  # the finite-difference noise is seeded with seed + this


@dataclass(frozen=True)
class RolloutParams(NotebookParams):
    """Parameters shared by the differentiable-rollout notebooks (01 and 02)."""

    n_state: int = spec(4, lo=1, hi=8, help="state dimension n (LQR and tanh plant)")
    n_action: int = spec(2, lo=1, hi=4, help="action dimension m (LQR and tanh plant)")
    horizon: int = spec(20, lo=1, hi=50, help="number of steps T")
    sigma: float = spec(0.5, lo=0.01, hi=1.0, help="action noise scale σ")
    system: str = spec("tanh", choices=("tanh", "pendulum"), help="the nonlinear system")


@dataclass(frozen=True)
class Theorem1Params(RolloutParams):
    """Parameters of ``01_costates_are_value_gradients`` (book/theory.md §1)."""

    # the run profiles: their overrides of the defaults below (the defaults are `default`)
    PROFILES: ClassVar[dict] = {"smoke": {"n_rollouts": 4_000, "horizon": 10},
                                "default": {},
                                "paper": {"n_rollouts": 2_000_000, "n_state": 8, "n_action": 4,
                                          "horizon": 50}}

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


def run_study(params: Theorem1Params) -> Theorem1Result:
    """:func:`run` with the notebook's parameters."""
    return run(seed=params.seed, n_state=params.n_state, n_action=params.n_action,
               horizon=params.horizon, sigma=params.sigma, n_rollouts=params.n_rollouts,
               system=params.system)


# ------------------------------------------------------------------------------ the claims
Z_MAX = 3.0            # a discrepancy within 3 of its own Monte Carlo standard errors (stats.norm_z)
RATE_RANGE = (-0.65, -0.35)   # the log-log slope of the error against N: the Monte Carlo −1/2
ADJOINT_MAX_REL = 1e-10       # autograd against the adjoint recursion: float64 rounding

CLAIMS = (
    ClaimSpec("thm1.lqr.z",
              "LQR: ‖mean costate λ_0 − ∇V_0(x_0)‖ (closed form −2P_0x_0) at the largest N, over its "
              "Monte Carlo standard error (z)", "<=", Z_MAX,
              fails_if="the mean costate misses the closed-form value gradient by more than 3 "
                       "standard errors (a wrong adjoint, a wrong P_t, a biased estimator)"),
    ClaimSpec("thm1.lqr.rate_slope",
              "LQR: log-log slope of that error against N (Monte Carlo rate −1/2)", "in", RATE_RANGE,
              fails_if="the error does not fall as N^(-1/2) (a bias would flatten the slope toward 0)"),
    ClaimSpec("thm1.nonlinear.z",
              "{system}: ‖mean costate − finite-difference gradient of the Monte Carlo value‖ "
              "over the standard error of the difference (z; common random numbers, independent noise)",
              "<=", Z_MAX,
              fails_if="on the nonlinear system the mean costate and the finite-difference value "
                       "gradient differ by more than 3 standard errors"),
    ClaimSpec("thm1.lqr.adjoint_autograd",
              "LQR: autograd costates equal the hand-written adjoint recursion at every step "
              "(max relative difference)", "<=", ADJOINT_MAX_REL, exact=True,
              fails_if="autograd and the adjoint recursion of §1 differ beyond float64 rounding"),
)


def claim_values(result: Theorem1Result, params: Theorem1Params) -> dict[str, Measured]:
    """What this run measured for each of :data:`CLAIMS`."""
    conv = result.convergence
    return {
        "thm1.lqr.z": Measured(result.lqr.z),
        "thm1.lqr.rate_slope": Measured(conv.slope, ci=(conv.slope - 1.96 * conv.slope_se,
                                                        conv.slope + 1.96 * conv.slope_se)),
        "thm1.nonlinear.z": Measured(result.nonlinear.z, fields={"system": params.system}),
        "thm1.lqr.adjoint_autograd": Measured(result.steps.adjoint_max_rel),
    }


def finding(result: Theorem1Result, params: Theorem1Params) -> str:
    """The landing page's one line for this run."""
    return (f"mean costate against the closed-form value gradient: z = {result.lqr.z:.2f} (LQR); "
            f"against finite differences on {params.system}: z = {result.nonlinear.z:.2f} "
            f"({Z_MAX:g} = the limit)")


# ----------------------------------------------------------------------------- the figures
def figure_convergence(result: Theorem1Result):
    """The RMS relative error of the mean ``λ_0`` against N, with the ``N^(-1/2)`` reference."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    conv = result.convergence
    fig, ax = plt.subplots(figsize=plots.figsize(6, 4.2))
    ax.loglog(conv.sizes, conv.errors, "o-", label="RMS relative error of mean $\\lambda_0$")
    ref = conv.errors[0] * np.sqrt(conv.sizes[0] / conv.sizes)
    ax.loglog(conv.sizes, ref, "k--", label="$N^{-1/2}$ reference")
    ax.set_xlabel("number of rollouts $N$")
    ax.set_ylabel("$\\|\\bar\\lambda_0 - \\nabla V_0(x_0)\\| / \\|\\nabla V_0(x_0)\\|$")
    ax.set_title(f"LQR, slope {conv.slope:.3f} ± {conv.slope_se:.3f}")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return fig


def figure_components(result: Theorem1Result, params: Theorem1Params):
    """Left: mean ``λ_0`` against the closed form, per component; right: the fitted ``M_t`` in
    ``λ_t ≈ M_t x_t`` against ``−2P_t`` at every step."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    lqr, steps = result.lqr, result.steps
    fig, axes = plt.subplots(1, 2, figsize=plots.figsize(10, 4.2))
    ax = axes[0]
    lim = np.abs(lqr.analytic).max() * 1.15
    ax.plot([-lim, lim], [-lim, lim], "k:", lw=1, label="identity")
    ax.errorbar(lqr.analytic, lqr.costate_mean, yerr=2 * lqr.costate_se, fmt="o",
                label="mean $\\lambda_0$ ± 2 SE")
    ax.set_xlabel("$\\nabla V_0(x_0) = -2P_0x_0$ (closed form)")
    ax.set_ylabel("mean costate $\\bar\\lambda_0$")
    ax.set_title(f"$t = 0$, N = {params.n_rollouts}")
    ax.legend()
    ax = axes[1]
    T = steps.exact.shape[0]
    colors = plt.cm.viridis(np.linspace(0, 1, T))
    for t in range(T):
        ax.scatter(steps.exact[t].ravel(), steps.fit[t].ravel(), s=10, color=colors[t])
    lo, hi = steps.exact.min(), steps.exact.max()
    ax.plot([lo, hi], [lo, hi], "k:", lw=1)
    sm = plt.cm.ScalarMappable(cmap="viridis", norm=plt.Normalize(0, T - 1))
    fig.colorbar(sm, ax=ax, label="step $t$")
    ax.set_xlabel("entries of $-2P_t$ (closed form)")
    ax.set_ylabel("entries of fitted $M_t$ in $\\lambda_t \\approx M_t x_t$")
    ax.set_title("every step $t = 0, \\dots, T$")
    return fig


def figure_nonlinear(result: Theorem1Result, params: Theorem1Params):
    """The nonlinear system: finite-difference value gradient and mean costate, per component."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    nonlinear = result.nonlinear
    fig, ax = plt.subplots(figsize=plots.figsize(6, 4.2))
    idx = np.arange(nonlinear.fd.size)
    ax.bar(idx - 0.2, nonlinear.fd, width=0.4, label="finite difference of MC value")
    ax.bar(idx + 0.2, nonlinear.costate_mean, width=0.4, yerr=2 * nonlinear.costate_se,
           label="mean costate $\\bar\\lambda_0$ ± 2 SE")
    ax.set_xticks(idx, [f"$x_{{{i}}}$" for i in idx])
    ax.set_ylabel("$\\partial V_0 / \\partial x_{0,i}$")
    ax.set_title(f"{params.system}: cosine {nonlinear.cosine:.6f}")
    ax.axhline(0, color="k", lw=0.8)
    ax.legend()
    return fig
