"""The actor-update experiment (book/theory.md §2, the Proposition, reconstructed).

On an LQR system with a linear Gaussian shift policy, where ``∇J`` is exact, and on a
nonlinear system with a small MLP policy, where the reference is a finite difference.
Each sub-experiment is a function with a typed result; :func:`run` composes them:

* :func:`lqr_problem`, :func:`per_rollout_gradients`: one sample of rollouts and the
  per-rollout gradient of every :class:`Estimator` on it;
* :func:`summarize_estimator`: an estimator's mean against the exact gradient as ``N``
  grows, and its variance per rollout (the price the score function pays);
* :func:`paired_difference`, :func:`z_against`, :func:`bias_check`,
  :func:`variance_ratio`: the Proposition's identity ``E[g_SF] = E[g_PD] = ∇J`` judged
  against its Monte Carlo error, a bias check over many independent estimates, and the
  variance ratio with a jackknife standard error;
* :func:`ppo_check`: at θ_old the PPO surrogate gradient *is* the SF gradient; after K
  inner epochs the clipped terms drop out;
* :func:`grpo_sweep`: the mean group-normalised update as the group size ``G`` grows;
* :func:`nonlinear_check`: PD against SF and a finite difference on the nonlinear system.

``g_SF`` in the claims is REINFORCE with reward-to-go and a leave-one-out baseline
(:attr:`Estimator.SF_LOO`: unbiased, and the lowest-variance SF variant here); plain
REINFORCE and the batch-mean baseline are shown beside it. Results are keyed by
:class:`Estimator`; display labels belong to the notebook.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from vgh_lib.common import stats
from vgh_lib.errors import ParameterError
from vgh_lib.experiments.theorem1 import FD_SEED_OFFSET, Z_MAX, RolloutParams
from vgh_lib.harness.claims import ClaimSpec, Measured
from vgh_lib.harness.params import spec
from vgh_lib.rollout import dynamics as ro
from vgh_lib.rollout import estimators as es


@dataclass(frozen=True)
class ActorUpdateParams(RolloutParams):
    """Parameters of ``02_actor_update_estimators`` (book/theory.md §2)."""

    # the run profiles: their overrides of the defaults below (the defaults are `default`)
    PROFILES: ClassVar[dict] = {"smoke": {"n_rollouts": 4_096, "horizon": 8, "n_fd_rollouts": 2_000},
                                "default": {},
                                "paper": {"n_rollouts": 1_000_000, "n_state": 8, "n_action": 4,
                                          "horizon": 50, "hidden": 32, "n_fd_rollouts": 200_000}}

    n_rollouts: int = spec(100_000, lo=1_024, hi=2_000_000, help="largest number of rollouts N")
    group_size: int = spec(16, lo=2, hi=256, help="GRPO group size G")
    hidden: int = spec(8, lo=1, hi=64, help="width of the MLP policy on the nonlinear system")
    ppo_epochs: int = spec(10, lo=1, hi=100, help="PPO inner epochs K on one batch")
    ppo_clip: float = spec(0.2, lo=0.01, hi=1.0, help="PPO clip range ε")
    ppo_step: float = spec(0.05, lo=1e-4, hi=1.0, help="PPO step per epoch, relative to ‖K‖")
    n_fd_rollouts: int = spec(20_000, lo=1_000, hi=1_000_000, help="rollouts of the finite-difference reference")

    def check(self) -> None:
        if self.n_rollouts < 4 * self.group_size:
            raise ParameterError(f"parameter 'n_rollouts' = {self.n_rollouts} must be at least "
                                 f"4 × group_size = {4 * self.group_size}")


N_REPEATS = 20  # independent estimates of each gradient in the bias check


class Estimator(enum.Enum):
    """The per-rollout policy-gradient estimators compared on LQR, in display order."""

    PD = "pd"            # pathwise (BPTT), from the costates of Theorem 1
    SF_NONE = "sf_none"  # REINFORCE with reward-to-go, no baseline
    SF_MEAN = "sf_mean"  # ... with the batch-mean baseline
    SF_LOO = "sf_loo"    # ... with the leave-one-out baseline: g_SF of the claims
    GRPO = "grpo"        # group-normalised outcome advantage, groups of G


# The baseline argument of :func:`vgh_lib.rollout.estimators.reinforce` for each SF variant.
SF_BASELINE = {Estimator.SF_NONE: "none", Estimator.SF_MEAN: "mean", Estimator.SF_LOO: "loo"}


# ---------------------------------------------------------------------------- results
@dataclass
class EstimatorSummary:
    """One estimator's per-rollout gradients (B, P) against the exact gradient."""

    cosine_curve: np.ndarray  # mean cosine over disjoint batches of each N of the grid
    variance: float           # tr Var(per-rollout gradient)
    rel_variance: float       # tr Var / ‖mean gradient‖² (scale-free)
    mean: np.ndarray          # (P,) mean gradient over all rollouts
    cosine: float             # cosine of that mean with ∇J


@dataclass
class PairedDifference:
    """``D = g_a − g_b`` on the same rollouts: the size of its mean, two ways."""

    rel_diff: float  # ‖mean D‖ / ‖reference‖
    z: float         # ‖mean D‖ / sqrt(tr Cov(D)/N)


@dataclass
class BiasCheck:
    """The sample split into R independent estimates: their mean and its standard error."""

    mean: np.ndarray  # (P,)
    se: np.ndarray    # (P,)


@dataclass
class VarianceRatio:
    """``tr Var(g_a) / tr Var(g_b)`` per rollout and its delete-one-block jackknife SE."""

    ratio: float
    se: float


@dataclass
class PPOResult:
    """K inner PPO epochs on one batch, epoch by epoch (index 0 = θ_old)."""

    identity_rel: float     # ‖∇PPO(θ_old) − mean g_SF‖ / ‖mean g_SF‖, same advantages
    clipfrac: np.ndarray    # (K+1,)
    grad_norm: np.ndarray   # (K+1,) ‖∇ surrogate‖ / ‖∇J‖
    cosine: np.ndarray      # (K+1,) cosine of ∇ surrogate with ∇J(θ_old)


@dataclass
class GRPOSweep:
    """The mean GRPO update at each group size."""

    group_sizes: list[int]
    cosine: np.ndarray  # (len(group_sizes),) cosine with ∇J
    scale: np.ndarray   # (len(group_sizes),) ‖mean update‖ / ‖∇J‖
    group_size: int     # the notebook's G (one of group_sizes)

    @property
    def main_cosine(self) -> float:
        """The cosine at ``group_size``."""
        return float(self.cosine[self.group_sizes.index(self.group_size)])

    @property
    def main_scale(self) -> float:
        """The scale at ``group_size``."""
        return float(self.scale[self.group_sizes.index(self.group_size)])


@dataclass
class NonlinearResult:
    """PD and leave-one-out SF with an MLP policy on a nonlinear system, against FD."""

    system: str
    n_params: int          # number of policy parameters P
    fd: np.ndarray         # (P,) finite-difference gradient of the MC objective
    pd_mean: np.ndarray    # (P,) mean g_PD
    sf_mean: np.ndarray    # (P,) mean g_SF
    sf_pd: PairedDifference  # g_SF − g_PD, relative to ‖FD‖
    pd_cosine: float       # cosine of mean g_PD with FD
    sf_cosine: float       # cosine of mean g_SF with FD
    variance_ratio: float  # tr Var(g_SF) / tr Var(g_PD)


@dataclass
class ActorUpdateResult:
    """Everything the notebook plots and claims. Gradients are flattened NumPy arrays."""

    exact: np.ndarray                             # (P,) exact ∇_K J
    sizes: list[int]                              # N grid of the cosine curves
    estimators: dict[Estimator, EstimatorSummary]  # every estimator, in Estimator order
    sf_pd: PairedDifference                       # g_SF − g_PD on the same rollouts, LQR
    z: dict[Estimator, float]                     # PD, SF_LOO: ‖mean − ∇J‖ / sqrt(tr Cov/N)
    bias: dict[Estimator, BiasCheck]              # PD, SF_LOO: R independent estimates
    variance_ratio: VarianceRatio                 # g_SF over g_PD, LQR
    ppo: PPOResult
    grpo: GRPOSweep
    nonlinear: NonlinearResult


# --------------------------------------------------------------------------- helpers
def _variance(g: torch.Tensor) -> float:
    """Trace of the covariance of per-rollout gradients (B, P)."""
    return float(g.var(0).sum())


def _rel_variance(g: torch.Tensor) -> float:
    """Scale-free variance: tr Var / ‖mean‖², comparable across estimators of different scale."""
    return float(g.var(0).sum() / g.mean(0).norm() ** 2)


def _first(s: es.Samples, group_size: int) -> es.Samples:
    """The first whole groups of ``group_size`` rollouts (GRPO needs B divisible by G)."""
    m = (s.actions.shape[1] // group_size) * group_size
    return es.Samples(s.states[:, :m], s.actions[:, :m], s.returns[:, :m], s.noise[:, :m],
                      s.x0, s.sigma)


def _batch_cosines(g: torch.Tensor, target: torch.Tensor, sizes: list[int]) -> np.ndarray:
    """Mean cosine with ``target`` of the means of disjoint batches of each size.

    A size larger than the sample (GRPO keeps only whole groups) uses the whole sample.
    """
    out = []
    for n in sizes:
        n = min(n, g.shape[0])
        k = g.shape[0] // n
        means = g[: k * n].reshape(k, n, -1).mean(1)
        cos = (means @ target) / (means.norm(dim=1) * target.norm())
        out.append(float(cos.mean()))
    return np.asarray(out)


# --------------------------------------------------------------------- sub-experiments
@dataclass(frozen=True)
class LQRGradientProblem:
    """An LQR system with a linear policy, a start state and the exact ``∇_K J``."""

    system: ro.LQRSystem
    policy: ro.LinearPolicy
    x0: torch.Tensor
    sigma: float
    horizon: int
    exact: torch.Tensor  # (m·n,)


def lqr_problem(seed: int, n_state: int, n_action: int, sigma: float,
                horizon: int) -> LQRGradientProblem:
    """The random LQR problem of ``seed`` and its exact policy gradient."""
    system, policy, x0 = ro.make_problem("lqr", n_state, n_action, seed)
    exact = es.lqr_exact_gradient(system, policy.K, x0, sigma, horizon)
    return LQRGradientProblem(system, policy, x0, sigma, horizon, exact)


def per_rollout_gradients(system, policy, s: es.Samples,
                          group_size: int) -> dict[Estimator, torch.Tensor]:
    """Every estimator's per-rollout gradients on the rollouts ``s``, (B, P) each (GRPO keeps
    the first whole groups of ``group_size``), in :class:`Estimator` order."""
    grads = {Estimator.PD: es.pathwise(system, policy, s)}
    for est, baseline in SF_BASELINE.items():
        grads[est] = es.reinforce(policy, s, baseline)
    grads[Estimator.GRPO] = es.grpo(policy, _first(s, group_size), group_size)
    return grads


def summarize_estimator(g: torch.Tensor, exact: torch.Tensor, sizes: list[int]) -> EstimatorSummary:
    """Per-rollout gradients ``g`` (B, P) against ``exact``: cosine curve over ``sizes``,
    variance per rollout (absolute and relative), the mean and its cosine."""
    return EstimatorSummary(cosine_curve=_batch_cosines(g, exact, sizes), variance=_variance(g),
                            rel_variance=_rel_variance(g), mean=g.mean(0).numpy(),
                            cosine=stats.cosine(g.mean(0), exact))


def paired_difference(a: torch.Tensor, b: torch.Tensor, reference: torch.Tensor) -> PairedDifference:
    """``D = a − b`` row by row (the same rollouts): ‖mean D‖ over ‖reference‖ and over the
    standard error ``sqrt(tr Cov(D)/N)``."""
    diff = a - b
    d_norm = diff.mean(0).norm()
    return PairedDifference(rel_diff=float(d_norm / reference.norm()),
                            z=float(d_norm / torch.sqrt(diff.var(0).sum() / a.shape[0])))


def z_against(g: torch.Tensor, target: torch.Tensor) -> float:
    """``‖mean g − target‖ / sqrt(Σ SE²)`` for per-rollout gradients ``g`` (B, P)."""
    return stats.norm_z(g.mean(0) - target, g.std(0) / np.sqrt(g.shape[0]))


def bias_check(g: torch.Tensor, n_repeats: int) -> BiasCheck:
    """The first ``R·(B // R)`` rows of ``g`` as ``R = n_repeats`` independent estimates:
    the mean of the R estimates and its standard error."""
    k = g.shape[0] // n_repeats
    est = g[: k * n_repeats].reshape(n_repeats, k, -1).mean(1)  # (R, P)
    return BiasCheck(mean=est.mean(0).numpy(), se=(est.std(0) / np.sqrt(n_repeats)).numpy())


def variance_ratio(a: torch.Tensor, b: torch.Tensor, n_blocks: int) -> VarianceRatio:
    """``tr Var(a) / tr Var(b)`` per rollout, with a delete-one-block jackknife standard
    error over ``n_blocks`` blocks of rollouts (:func:`vgh_lib.common.stats.block_jackknife_se`)."""
    return VarianceRatio(
        ratio=_variance(a) / _variance(b),
        se=stats.block_jackknife_se(lambda rows: _variance(a[rows]) / _variance(b[rows]),
                                    a.shape[0], n_blocks))


def ppo_check(policy: ro.LinearPolicy, s: es.Samples, exact: torch.Tensor, sf_mean: torch.Tensor,
              clip: float, epochs: int, step: float) -> PPOResult:
    """K = ``epochs`` PPO epochs on ``s`` with leave-one-out advantages, step size ``step·‖K‖``
    relative to the mean SF gradient ``sf_mean``; at θ_old the surrogate gradient must equal
    the SF gradient with the same advantages."""
    G = s.returns[:-1]
    advantage = G - es.baseline_values(G, "loo")
    lr = step * float(policy.K.detach().norm()) / float(sf_mean.norm())
    trace = es.ppo_epochs(policy, s, advantage, clip, epochs, lr)
    sf_same = es.score_function(policy, s, advantage).mean(0)  # the same advantages
    return PPOResult(identity_rel=float((trace.grads[0] - sf_same).norm() / sf_same.norm()),
                     clipfrac=trace.clipfrac.numpy(),
                     grad_norm=(trace.grads.norm(dim=1) / exact.norm()).numpy(),
                     cosine=np.array([stats.cosine(g, exact) for g in trace.grads]))


def grpo_group_sizes(group_size: int, n_rollouts: int) -> list[int]:
    """Powers of two from 2 to 64 that leave at least 4 groups, plus ``group_size``."""
    sizes = [g for g in (2, 4, 8, 16, 32, 64) if g <= n_rollouts // 4]
    if group_size not in sizes:
        sizes = sorted(set(sizes) | {group_size})
    return sizes


def grpo_sweep(policy, s: es.Samples, exact: torch.Tensor, group_size: int) -> GRPOSweep:
    """The mean GRPO update on the first whole groups of ``s``, at each group size of
    :func:`grpo_group_sizes`: its cosine with ``exact`` and its norm over ``‖exact‖``."""
    group_sizes = grpo_group_sizes(group_size, s.actions.shape[1])
    cos, scale = [], []
    for gsz in group_sizes:
        mean = es.grpo(policy, _first(s, gsz), gsz).mean(0)
        cos.append(stats.cosine(mean, exact))
        scale.append(float(mean.norm() / exact.norm()))
    return GRPOSweep(group_sizes, np.asarray(cos), np.asarray(scale), group_size)


def nonlinear_check(system: str, n_state: int, n_action: int, seed: int, hidden: int,
                    sigma: float, horizon: int, n_rollouts: int, gen: torch.Generator,
                    n_fd_rollouts: int = 20000, fd_step: float = 1e-4) -> NonlinearResult:
    """An MLP policy (weights from ``gen``) on ``system``: ``n_rollouts`` rollouts (noise from
    ``gen``), PD and leave-one-out SF against a finite difference of the MC objective
    (``n_fd_rollouts``, noise seeded with ``seed + FD_SEED_OFFSET``)."""
    sys_, _, x0 = ro.make_problem(system, n_state, n_action, seed)
    mlp = ro.MLPPolicy(sys_.n_state, sys_.n_action, hidden, generator=gen)
    s = es.sample(sys_, mlp, x0, sigma, horizon, n_rollouts, gen)
    pd, sf = es.pathwise(sys_, mlp, s), es.reinforce(mlp, s, "loo")
    fd_gen = torch.Generator().manual_seed(seed + FD_SEED_OFFSET)
    fd = es.fd_objective_gradient(sys_, mlp, x0, sigma, horizon, n_fd_rollouts, fd_gen, fd_step)
    return NonlinearResult(
        system=system, n_params=fd.numel(), fd=fd.numpy(), pd_mean=pd.mean(0).numpy(),
        sf_mean=sf.mean(0).numpy(), sf_pd=paired_difference(sf, pd, fd),
        pd_cosine=stats.cosine(pd.mean(0), fd), sf_cosine=stats.cosine(sf.mean(0), fd),
        variance_ratio=_variance(sf) / _variance(pd))


def run(*, seed: int, n_state: int, n_action: int, horizon: int, sigma: float,
        n_rollouts: int, group_size: int, system: str, hidden: int = 8,
        ppo_epochs: int = 10, ppo_clip: float = 0.2, ppo_step: float = 0.05,
        n_repeats: int = N_REPEATS, n_fd_rollouts: int = 20000, fd_step: float = 1e-4,
        progress: Callable[[str], None] | None = None) -> ActorUpdateResult:
    """Run the whole experiment. One noise stream, ``torch.Generator(seed)``, feeds in this
    order: the LQR rollouts, then the MLP's weights and the nonlinear rollouts."""
    tick = progress or (lambda msg: None)
    gen = torch.Generator().manual_seed(seed)
    problem = lqr_problem(seed, n_state, n_action, sigma, horizon)
    exact = problem.exact

    tick("LQR: sampling and per-rollout gradients")
    s = es.sample(problem.system, problem.policy, problem.x0, sigma, horizon, n_rollouts, gen)
    grads = per_rollout_gradients(problem.system, problem.policy, s, group_size)
    sf, pd = grads[Estimator.SF_LOO], grads[Estimator.PD]
    sizes = stats.log_spaced_sizes(10, n_rollouts, 10)
    checked = (Estimator.PD, Estimator.SF_LOO)  # Proposition: E[g_SF] = E[g_PD] = ∇_θ J

    tick("PPO inner epochs")
    ppo = ppo_check(problem.policy, s, exact, sf.mean(0), ppo_clip, ppo_epochs, ppo_step)

    tick("GRPO group sizes")
    grpo = grpo_sweep(problem.policy, s, exact, group_size)

    tick(f"nonlinear system ({system}) with an MLP policy")
    nonlinear = nonlinear_check(system, n_state, n_action, seed, hidden, sigma, horizon,
                                n_rollouts, gen, n_fd_rollouts, fd_step)

    return ActorUpdateResult(
        exact=exact.numpy(), sizes=sizes,
        estimators={est: summarize_estimator(g, exact, sizes) for est, g in grads.items()},
        sf_pd=paired_difference(sf, pd, exact),
        z={est: z_against(grads[est], exact) for est in checked},
        bias={est: bias_check(grads[est], n_repeats) for est in checked},
        variance_ratio=variance_ratio(sf, pd, n_repeats), ppo=ppo, grpo=grpo,
        nonlinear=nonlinear)


def run_study(params: ActorUpdateParams, progress: Callable[[str], None] | None = None
              ) -> ActorUpdateResult:
    """:func:`run` with the notebook's parameters."""
    kwargs = {k: v for k, v in params.as_dict().items() if k != "profile"}
    return run(**kwargs, progress=progress)


def labels(params: ActorUpdateParams) -> dict[Estimator, str]:
    """How the figures and the printout name each estimator."""
    E = Estimator
    return {E.PD: "PD (BPTT)", E.SF_NONE: "SF (no baseline)", E.SF_MEAN: "SF (mean baseline)",
            E.SF_LOO: "SF (leave-one-out)", E.GRPO: f"GRPO (G={params.group_size})"}


def glued_numbers(result: ActorUpdateResult, params: ActorUpdateParams) -> dict[str, float]:
    """The numbers the chapter's text glues, by glue key."""
    E, est, nl = Estimator, result.estimators, result.nonlinear
    return {"prop.n_max": params.n_rollouts, "prop.sf_pd_z": result.sf_pd.z,
            "prop.sf_pd_rel_diff": result.sf_pd.rel_diff,
            "prop.nonlinear.sf_pd_rel_diff": nl.sf_pd.rel_diff,
            "prop.pd.cosine": est[E.PD].cosine, "prop.sf.cosine": est[E.SF_LOO].cosine,
            "prop.var.pd": est[E.PD].rel_variance,
            "prop.var.sf_none": est[E.SF_NONE].rel_variance,
            "prop.var.sf_loo": est[E.SF_LOO].rel_variance,
            "prop.var.grpo": est[E.GRPO].rel_variance,
            "prop.ppo.clipfrac_last": result.ppo.clipfrac[-1],
            "prop.ppo.grad_norm_last": result.ppo.grad_norm[-1],
            "prop.ppo.cosine_last": result.ppo.cosine[-1],
            "prop.grpo.scale": result.grpo.main_scale,
            "prop.nonlinear.sf_pd_z": nl.sf_pd.z,
            "prop.nonlinear.pd_cosine": nl.pd_cosine,
            "prop.nonlinear.sf_cosine": nl.sf_cosine,
            "prop.nonlinear.variance_ratio": nl.variance_ratio,
            "prop.variance_ratio_se": result.variance_ratio.se,
            "prop.nonlinear.n_params": nl.n_params}


# ------------------------------------------------------------------------------ the claims
PPO_IDENTITY_MAX_REL = 1e-10   # the clipped surrogate's gradient at θ_old against SF: float64
GRPO_COSINE_MIN = 0.98         # about 11°: GRPO's 1/std weighting makes it an approximation

CLAIMS = (
    ClaimSpec("prop.ppo_equals_sf",
              "PPO clipped-surrogate gradient at θ_old equals the SF gradient on the same samples "
              "(relative difference, float64)", "<=", PPO_IDENTITY_MAX_REL, exact=True,
              fails_if="the clipped surrogate's gradient at θ_old is not the SF gradient (wrong ratio, "
                       "advantage or clipping)"),
    ClaimSpec("prop.sf_pd_agree",
              "LQR: ‖mean g_SF − mean g_PD‖ over its standard error (z; paired on the same rollouts)",
              "<=", Z_MAX,
              fails_if="the SF and pathwise means differ by more than 3 standard errors of the paired "
                       "difference"),
    ClaimSpec("prop.pd.z",
              "LQR: ‖mean g_PD − exact ∇J‖ at the largest N over its standard error (z)", "<=", Z_MAX,
              fails_if="the pathwise (BPTT) mean misses the closed-form gradient by more than 3 SE"),
    ClaimSpec("prop.sf.z",
              "LQR: ‖mean g_SF − exact ∇J‖ at the largest N over its standard error (z)", "<=", Z_MAX,
              fails_if="the score-function mean misses the closed-form gradient by more than 3 SE "
                       "(a baseline that depends on the sample, a wrong score)"),
    ClaimSpec("prop.grpo.cosine",
              "LQR: cosine of the mean GRPO update (G = {group_size}) with the exact gradient "
              "(GRPO's 1/std weighting makes it an approximation, not an identity)",
              ">=", GRPO_COSINE_MIN, kind="empirical",
              fails_if="GRPO's group normalisation turns the mean update away from ∇J by more than "
                       "about 11°"),
    ClaimSpec("prop.variance_ratio",
              "LQR: per-rollout variance of g_SF divided by that of g_PD (95 % interval from a "
              "delete-one-block jackknife over 20 blocks of rollouts)", ">=", 1.0, kind="empirical",
              require_ci=True,
              fails_if="the score function is not noisier than the pathwise estimator per rollout, "
                       "beyond the Monte Carlo error of the ratio"),
    ClaimSpec("prop.nonlinear.sf_pd_agree",
              "{system} + MLP: ‖mean g_SF − mean g_PD‖ over its standard error (z, paired)",
              "<=", Z_MAX,
              fails_if="on the nonlinear system SF and pathwise means differ by more than 3 SE"),
)


def claim_values(result: ActorUpdateResult, params: ActorUpdateParams) -> dict[str, Measured]:
    """What this run measured for each of :data:`CLAIMS`."""
    vr = result.variance_ratio
    return {
        "prop.ppo_equals_sf": Measured(result.ppo.identity_rel),
        "prop.sf_pd_agree": Measured(result.sf_pd.z),
        "prop.pd.z": Measured(result.z[Estimator.PD]),
        "prop.sf.z": Measured(result.z[Estimator.SF_LOO]),
        "prop.grpo.cosine": Measured(result.grpo.main_cosine, fields={"group_size": params.group_size}),
        "prop.variance_ratio": Measured(vr.ratio, ci=(vr.ratio - 1.96 * vr.se, vr.ratio + 1.96 * vr.se)),
        "prop.nonlinear.sf_pd_agree": Measured(result.nonlinear.sf_pd.z, fields={"system": params.system}),
    }


def finding(result: ActorUpdateResult) -> str:
    """The landing page's one line for this run."""
    return (f"score-function and pathwise means agree: z = {result.sf_pd.z:.2f} ({Z_MAX:g} = the limit); "
            f"the mean GRPO update's cosine with the exact gradient: {result.grpo.main_cosine:.3f}")


# ----------------------------------------------------------------------------- the figures
def figure_estimators(result: ActorUpdateResult, params: ActorUpdateParams):
    """Left: each estimator's mean cosine with the exact gradient against N; right: its
    per-rollout relative variance."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    names = labels(params)
    fig, axes = plt.subplots(1, 2, figsize=plots.figsize(11, 4.2))
    for e, summary in result.estimators.items():
        axes[0].semilogx(result.sizes, summary.cosine_curve, "o-", ms=3, label=names[e])
    axes[0].set_xlabel("rollouts $N$ per estimate")
    axes[0].set_ylabel("mean cosine with exact $\\nabla_K J$")
    axes[0].set_ylim(min(0.0, min(s.cosine_curve.min() for s in result.estimators.values())), 1.02)
    axes[0].legend(fontsize=9)
    axes[0].grid(alpha=0.3)
    axes[1].barh([names[e] for e in result.estimators],
                 [s.rel_variance for s in result.estimators.values()])
    axes[1].set_xscale("log")
    axes[1].set_xlabel("tr Var(per-rollout gradient) / ‖mean gradient‖²")
    axes[1].invert_yaxis()
    return fig


def figure_bias(result: ActorUpdateResult, params: ActorUpdateParams):
    """The exact gradient's components and the PD and SF means of repeated estimates ± 2 SE."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    names = labels(params)
    fig, ax = plt.subplots(figsize=plots.figsize(7, 4.2))
    idx = np.arange(result.exact.size)
    ax.plot(idx, result.exact, "k_", ms=18, mew=2, label="exact $\\nabla_K J$")
    for off, e in ((-0.15, Estimator.PD), (0.15, Estimator.SF_LOO)):
        ax.errorbar(idx + off, result.bias[e].mean, yerr=2 * result.bias[e].se, fmt="o",
                    label=f"{names[e]}: mean of {N_REPEATS} estimates ± 2 SE")
    ax.set_xlabel("component of $K$ (flattened)")
    ax.set_ylabel("gradient")
    ax.legend(fontsize=9)
    return fig


def figure_ppo_grpo(result: ActorUpdateResult):
    """Left: PPO's inner epochs (clipped fraction, gradient size, cosine); right: the mean GRPO
    update's cosine and size against the group size."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    fig, axes = plt.subplots(1, 2, figsize=plots.figsize(11, 4.2))
    ep = np.arange(result.ppo.clipfrac.size)
    axes[0].plot(ep, result.ppo.clipfrac, "o-", label="clipped fraction")
    axes[0].plot(ep, result.ppo.grad_norm, "s-", label="‖surrogate gradient‖ / ‖∇J‖")
    axes[0].plot(ep, result.ppo.cosine, "^-", label="cosine with $\\nabla J(\\theta_{old})$")
    axes[0].set_xlabel("PPO inner epoch")
    axes[0].legend(fontsize=9)
    axes[0].grid(alpha=0.3)
    axes[1].semilogx(result.grpo.group_sizes, result.grpo.cosine, "o-", base=2, label="cosine with ∇J")
    axes[1].set_xlabel("group size $G$")
    axes[1].set_ylabel("cosine of mean GRPO update with $\\nabla J$")
    ax2 = axes[1].twinx()
    ax2.semilogx(result.grpo.group_sizes, result.grpo.scale, "s--", color="C1", base=2)
    ax2.set_ylabel("‖mean GRPO update‖ / ‖∇J‖", color="C1")
    axes[1].grid(alpha=0.3)
    return fig


def figure_nonlinear(result: ActorUpdateResult, params: ActorUpdateParams):
    """The nonlinear system: each parameter's PD and SF mean gradient against finite differences."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    names, nl = labels(params), result.nonlinear
    fig, ax = plt.subplots(figsize=plots.figsize(7, 4.2))
    for e, mean, marker in ((Estimator.PD, nl.pd_mean, "o"), (Estimator.SF_LOO, nl.sf_mean, "x")):
        ax.scatter(nl.fd, mean, marker=marker, s=18, label=names[e])
    lim = np.abs(nl.fd).max() * 1.1
    ax.plot([-lim, lim], [-lim, lim], "k:", lw=1)
    ax.set_xlabel("finite-difference gradient (per parameter)")
    ax.set_ylabel("mean estimator gradient")
    ax.set_title(f"{params.system}, MLP policy with {nl.n_params} parameters")
    ax.legend()
    return fig
