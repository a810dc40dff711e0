"""The actor-update experiment (THEORY.md §2, the Proposition, reconstructed).

On an LQR system with a linear Gaussian shift policy, where ``∇J`` is exact, and on a
nonlinear system with a small MLP policy, where the reference is a finite difference:

* every estimator's mean against the exact gradient as ``N`` grows, and its variance
  per rollout (the price the score function pays);
* a bias check: many independent estimates, their mean and standard error;
* PPO: at θ_old its surrogate gradient *is* the SF gradient; after K inner epochs the
  clipped terms drop out;
* GRPO: the mean group-normalised update as the group size ``G`` grows.

``g_SF`` in the claims is REINFORCE with reward-to-go and a leave-one-out baseline
(unbiased, and the lowest-variance SF variant here); plain REINFORCE and the
batch-mean baseline are shown beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vgh_lib.common import stats
from vgh_lib.errors import ParameterError
from vgh_lib.experiments.theorem1 import RolloutParams
from vgh_lib.harness.params import spec
from vgh_lib.rollout import dynamics as ro
from vgh_lib.rollout import estimators as es


@dataclass(frozen=True)
class ActorUpdateParams(RolloutParams):
    """Parameters of ``02_actor_update_estimators`` (THEORY.md §2)."""

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

SF_VARIANTS = {"SF (no baseline)": "none", "SF (mean baseline)": "mean", "SF (leave-one-out)": "loo"}


@dataclass
class ActorUpdateResult:
    """Everything the notebook plots and claims. Gradients are flattened, NumPy arrays."""

    exact: np.ndarray                      # (P,) exact ∇_K J
    sizes: list[int]                       # N grid
    cosine_curves: dict[str, np.ndarray]   # estimator -> mean cosine over disjoint batches of N
    variance: dict[str, float]             # estimator -> tr Var(per-rollout grad)
    variance_ratio: float                  # tr Var(g_SF) / tr Var(g_PD), LQR, leave-one-out SF
    variance_ratio_se: float               # its delete-one-block jackknife standard error
    rel_variance: dict[str, float]         # estimator -> tr Var / ‖mean grad‖² (scale-free)
    means: dict[str, np.ndarray]           # estimator -> mean gradient at the largest N
    cosine: dict[str, float]               # estimator -> cosine of that mean with ∇J
    bias_mean: dict[str, np.ndarray]       # estimator -> mean of R independent estimates
    bias_se: dict[str, np.ndarray]         # estimator -> standard error of that mean
    sf_pd_rel_diff: float                  # ‖mean g_SF − mean g_PD‖ / ‖∇J‖
    sf_pd_z: float                         # ‖mean D‖ / sqrt(tr Cov(D)/N), D = g_SF − g_PD paired
    z: dict[str, float]                    # estimator -> ‖mean − ∇J‖ / sqrt(tr Cov/N) (PD, SF)
    ppo_identity_rel: float                # ‖∇PPO(θ_old) − mean g_SF‖ / ‖mean g_SF‖
    ppo_clipfrac: np.ndarray               # (K+1,)
    ppo_grad_norm: np.ndarray              # (K+1,) ‖∇ surrogate‖ / ‖∇J‖
    ppo_cosine: np.ndarray                 # (K+1,) cosine of ∇ surrogate with ∇J(θ_old)
    group_sizes: list[int]
    grpo_cosine: np.ndarray                # (len(group_sizes),)
    grpo_scale: np.ndarray                 # ‖mean GRPO update‖ / ‖∇J‖
    grpo_main_cosine: float                # at the notebook's group_size
    nonlinear: dict[str, float] = field(default_factory=dict)
    nonlinear_vectors: dict[str, np.ndarray] = field(default_factory=dict)


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


def run(*, seed: int, n_state: int, n_action: int, horizon: int, sigma: float,
        n_rollouts: int, group_size: int, system: str, hidden: int = 8,
        ppo_epochs: int = 10, ppo_clip: float = 0.2, ppo_step: float = 0.05,
        n_repeats: int = 20, n_fd_rollouts: int = 20000, fd_step: float = 1e-4,
        progress=None) -> ActorUpdateResult:
    """Run the whole experiment; all randomness derives from ``seed``."""
    tick = progress or (lambda msg: None)
    gen = torch.Generator().manual_seed(seed)
    lqr, policy, x0 = ro.make_problem("lqr", n_state, n_action, seed)
    exact = es.lqr_exact_gradient(lqr, policy.K, x0, sigma, horizon)

    tick("LQR: sampling and per-rollout gradients")
    s = es.sample(lqr, policy, x0, sigma, horizon, n_rollouts, gen)
    grads = {"PD (BPTT)": es.pathwise(lqr, policy, s)}
    for label, kind in SF_VARIANTS.items():
        grads[label] = es.reinforce(policy, s, kind)
    grads[f"GRPO (G={group_size})"] = es.grpo(policy, _first(s, group_size), group_size)
    sf, pd = grads["SF (leave-one-out)"], grads["PD (BPTT)"]

    sizes = stats.log_spaced_sizes(10, n_rollouts, 10)
    # Proposition: E[g_SF] = E[g_PD] = ∇_θ J
    diff = sf - pd  # paired: the same rollouts
    d_mean = diff.mean(0)
    z = float(d_mean.norm() / torch.sqrt(diff.var(0).sum() / n_rollouts))

    k = n_rollouts // n_repeats
    bias_mean, bias_se = {}, {}
    for label in ("PD (BPTT)", "SF (leave-one-out)"):
        est = grads[label][: k * n_repeats].reshape(n_repeats, k, -1).mean(1)  # R estimates
        bias_mean[label] = est.mean(0).numpy()
        bias_se[label] = (est.std(0) / np.sqrt(n_repeats)).numpy()

    tick("PPO inner epochs")
    G = s.returns[:-1]
    advantage = G - es.baseline_values(G, "loo")
    lr = ppo_step * float(policy.K.detach().norm()) / float(sf.mean(0).norm())
    trace = es.ppo_epochs(policy, s, advantage, ppo_clip, ppo_epochs, lr)
    sf_same = es.score_function(policy, s, advantage).mean(0)  # the same advantages
    ppo_identity = float((trace.grads[0] - sf_same).norm() / sf_same.norm())

    tick("GRPO group sizes")
    group_sizes = [g for g in (2, 4, 8, 16, 32, 64) if g <= n_rollouts // 4]
    if group_size not in group_sizes:
        group_sizes = sorted(set(group_sizes) | {group_size})
    grpo_cos, grpo_scale = [], []
    for gsz in group_sizes:
        mean = es.grpo(policy, _first(s, gsz), gsz).mean(0)
        grpo_cos.append(stats.cosine(mean, exact))
        grpo_scale.append(float(mean.norm() / exact.norm()))

    result = ActorUpdateResult(
        exact=exact.numpy(), sizes=sizes,
        cosine_curves={k_: _batch_cosines(g, exact, sizes) for k_, g in grads.items()},
        variance={k_: _variance(g) for k_, g in grads.items()},
        variance_ratio=_variance(sf) / _variance(pd),
        variance_ratio_se=stats.block_jackknife_se(
            lambda rows: _variance(sf[rows]) / _variance(pd[rows]), sf.shape[0], n_repeats),
        rel_variance={k_: _rel_variance(g) for k_, g in grads.items()},
        means={k_: g.mean(0).numpy() for k_, g in grads.items()},
        cosine={k_: stats.cosine(g.mean(0), exact) for k_, g in grads.items()},
        bias_mean=bias_mean, bias_se=bias_se,
        sf_pd_rel_diff=float(d_mean.norm() / exact.norm()), sf_pd_z=z,
        z={k_: stats.norm_z(grads[k_].mean(0) - exact, grads[k_].std(0) / np.sqrt(n_rollouts))
           for k_ in ("PD (BPTT)", "SF (leave-one-out)")},
        ppo_identity_rel=ppo_identity, ppo_clipfrac=trace.clipfrac.numpy(),
        ppo_grad_norm=(trace.grads.norm(dim=1) / exact.norm()).numpy(),
        ppo_cosine=np.array([stats.cosine(g, exact) for g in trace.grads]),
        group_sizes=group_sizes, grpo_cosine=np.asarray(grpo_cos),
        grpo_scale=np.asarray(grpo_scale),
        grpo_main_cosine=grpo_cos[group_sizes.index(group_size)],
    )

    tick(f"nonlinear system ({system}) with an MLP policy")
    nl, _, nl_x0 = ro.make_problem(system, n_state, n_action, seed)
    mlp = ro.MLPPolicy(nl.n_state, nl.n_action, hidden, generator=gen)
    ns = es.sample(nl, mlp, nl_x0, sigma, horizon, n_rollouts, gen)
    nl_pd, nl_sf = es.pathwise(nl, mlp, ns), es.reinforce(mlp, ns, "loo")
    fd_gen = torch.Generator().manual_seed(seed + 1_000_003)
    fd = es.fd_objective_gradient(nl, mlp, nl_x0, sigma, horizon, n_fd_rollouts, fd_gen, fd_step)
    nd = nl_sf - nl_pd
    result.nonlinear = {
        "sf_pd_rel_diff": float(nd.mean(0).norm() / fd.norm()),
        "sf_pd_z": float(nd.mean(0).norm() / torch.sqrt(nd.var(0).sum() / n_rollouts)),
        "pd_cosine": stats.cosine(nl_pd.mean(0), fd),
        "sf_cosine": stats.cosine(nl_sf.mean(0), fd),
        "variance_ratio": _variance(nl_sf) / _variance(nl_pd),
        "n_params": float(fd.numel()),
    }
    result.nonlinear_vectors = {"fd": fd.numpy(), "PD (BPTT)": nl_pd.mean(0).numpy(),
                                "SF (leave-one-out)": nl_sf.mean(0).numpy()}
    return result
