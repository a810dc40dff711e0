"""Policy-gradient estimators for Gaussian shift policies on differentiable rollouts.

Serves book/theory.md §2 (the Proposition, reconstructed): under ``u = μ_θ(x) + σε`` the
score-function (REINFORCE) gradient behind PPO and GRPO has the same expectation as
the pathwise (BPTT) gradient built from the costates of Theorem 1,

    pathwise:        ∇_θ J = E[Σ_t (∂μ_θ/∂θ)ᵀ q_t],  q_t = ∇_u r + f_uᵀ λ_{t+1}
    score function:  g_SF = Σ_t (∂μ_θ/∂θ)ᵀ (ε_t/σ)(G_t − b_t)

and Stein's lemma ``E[ε h(ε)] = E[∇_ε h(ε)]`` makes their means equal.

Every estimator returns *per-rollout* gradients, shape (B, P), flattened in the order
of ``policy.named_parameters()``; their mean is the estimate and their variance is
what the score function pays. Per-rollout gradients come from ``torch.func.vmap``;
:func:`naive_per_rollout` is the reference loop the tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.func import functional_call, grad, vmap

from vgh_lib.rollout import dynamics as ro

BASELINES = ("none", "mean", "loo")


# ------------------------------------------------------------------------- helpers
def policy_params(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the policy parameters (the point θ the gradient is taken at)."""
    return {k: v.detach().clone() for k, v in policy.named_parameters()}


def flatten(grads: dict[str, torch.Tensor], batched: bool = True) -> torch.Tensor:
    """Concatenate a parameter dict into (B, P) (or (P,) when ``batched`` is False)."""
    parts = [g.reshape(g.shape[0], -1) if batched else g.reshape(-1) for g in grads.values()]
    return torch.cat(parts, dim=-1)


def _log_prob(policy, params, x, u, sigma):
    """log π_θ(u | x) up to a constant: −‖u − μ_θ(x)‖² / (2σ²). Shapes (T, B, ·) -> (T, B)."""
    mean = functional_call(policy, params, (x,))
    return -((u - mean) ** 2).sum(-1) / (2 * sigma ** 2)


@dataclass
class Samples:
    """Rollouts at θ_old, detached: what a critic-free method gets to see."""

    states: torch.Tensor   # (T, B, n) states x_t for t < T
    actions: torch.Tensor  # (T, B, m)
    returns: torch.Tensor  # (T+1, B) returns-to-go G_t
    noise: torch.Tensor    # (T, B, m)
    x0: torch.Tensor       # (n,)
    sigma: float


def sample(system, policy, x0, sigma: float, horizon: int, n_rollouts: int,
           generator: torch.Generator) -> Samples:
    """Draw ``n_rollouts`` rollouts from ``x0`` under the current policy (no gradients)."""
    eps = ro.sample_noise(horizon, n_rollouts, system.n_action, generator)
    with torch.no_grad():
        traj = ro.rollout(system, policy, x0, eps, sigma)
    return Samples(traj.states[:-1], traj.actions, traj.returns, eps, x0, sigma)


def baseline_values(returns: torch.Tensor, kind: str) -> torch.Tensor:
    """Baseline ``b_t`` for every rollout, shape like ``returns`` (…, B).

    ``none``: 0. ``mean``: the batch mean (includes the rollout itself, so the SF mean
    shrinks by ``1 − 1/B``). ``loo``: the mean of the *other* rollouts (unbiased).
    """
    if kind == "none":
        return torch.zeros_like(returns)
    B = returns.shape[-1]
    total = returns.sum(-1, keepdim=True)
    if kind == "mean":
        return (total / B).expand_as(returns)
    if kind == "loo":
        return (total - returns) / (B - 1)
    raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")


# -------------------------------------------------------------------- estimators
def pathwise(system, policy, s: Samples) -> torch.Tensor:
    """Per-rollout pathwise (BPTT) gradients ``∇_θ G_0`` with the noise held fixed, (B, P)."""
    params = policy_params(policy)

    def g0(p, eps):  # one rollout: eps (T, m)
        x = s.x0[None]
        total = x.new_zeros(1)
        for t in range(eps.shape[0]):
            u = functional_call(policy, p, (x,)) + s.sigma * eps[t][None]
            total = total + system.reward(x, u)
            x = system.step(x, u)
        return (total + system.terminal_reward(x)).sum()

    g = vmap(grad(g0), in_dims=(None, 1))(params, s.noise)
    return flatten(g)


def score_function(policy, s: Samples, advantages: torch.Tensor) -> torch.Tensor:
    """Per-rollout ``Σ_t ∇_θ log π(u_t|x_t) A_t`` for advantages (T, B) or (B,), (B, P)."""
    params = policy_params(policy)
    adv = advantages if advantages.dim() == 2 else advantages[None].expand(s.actions.shape[0], -1)

    def one(p, x, u, a):  # x (T, n), u (T, m), a (T,)
        return (_log_prob(policy, p, x, u, s.sigma) * a).sum()

    g = vmap(grad(one), in_dims=(None, 1, 1, 1))(params, s.states, s.actions, adv)
    return flatten(g)


def reinforce(policy, s: Samples, baseline: str = "none") -> torch.Tensor:
    """REINFORCE with reward-to-go and a baseline: ``A_t = G_t − b_t``, (B, P)."""
    G = s.returns[:-1]  # (T, B)
    return score_function(policy, s, G - baseline_values(G, baseline))


def grpo_advantages(returns: torch.Tensor, group_size: int, eps: float = 1e-8) -> torch.Tensor:
    """``A_i = (G_i − mean_group) / std_group`` over consecutive groups of ``group_size``.

    ``returns`` (B,) with B a multiple of ``group_size``; population std (as in GRPO).
    """
    B = returns.shape[0]
    if B % group_size:
        raise ValueError(f"{B} rollouts do not split into groups of {group_size}")
    g = returns.view(B // group_size, group_size)
    adv = (g - g.mean(1, keepdim=True)) / (g.std(1, unbiased=False, keepdim=True) + eps)
    return adv.reshape(B)


def grpo(policy, s: Samples, group_size: int) -> torch.Tensor:
    """Per-rollout GRPO actor gradients at θ_old: group-normalised outcome advantage, (B, P)."""
    return score_function(policy, s, grpo_advantages(s.returns[0], group_size))


def ppo_surrogate(policy, params, s: Samples, advantages: torch.Tensor, logp_old: torch.Tensor,
                  clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate ``mean_b Σ_t min(ρA, clip(ρ, 1±ε)A)`` and the clipped fraction.

    ``advantages`` and ``logp_old`` are (T, B). Returns (surrogate, clipfrac).
    """
    logp = _log_prob(policy, params, s.states, s.actions, s.sigma)  # (T, B)
    ratio = torch.exp(logp - logp_old)
    pg_loss1 = ratio * advantages
    pg_loss2 = torch.clamp(ratio, 1 - clip, 1 + clip) * advantages
    surrogate = torch.minimum(pg_loss1, pg_loss2).sum(0).mean()
    clipfrac = ((ratio - 1).abs() > clip).double().mean()
    return surrogate, clipfrac


@dataclass
class PPOTrace:
    """What K inner epochs of PPO on one batch did, epoch by epoch (index 0 = θ_old)."""

    grads: torch.Tensor      # (K+1, P) surrogate gradient at the start of each epoch
    clipfrac: torch.Tensor   # (K+1,) fraction of (t, b) terms outside the trust region
    surrogate: torch.Tensor  # (K+1,)


def ppo_epochs(policy, s: Samples, advantages: torch.Tensor, clip: float, epochs: int,
               lr: float) -> PPOTrace:
    """K epochs of gradient ascent on the clipped surrogate, from θ_old, on the same samples."""
    params = policy_params(policy)
    with torch.no_grad():
        logp_old = _log_prob(policy, params, s.states, s.actions, s.sigma)
    grads, fracs, surs = [], [], []
    for _ in range(epochs + 1):
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        sur, frac = ppo_surrogate(policy, p, s, advantages, logp_old, clip)
        g = torch.autograd.grad(sur, list(p.values()))
        grads.append(torch.cat([x.reshape(-1) for x in g]))
        fracs.append(frac.detach())
        surs.append(sur.detach())
        params = {k: v + lr * gk for (k, v), gk in zip(params.items(), g, strict=True)}
    return PPOTrace(torch.stack(grads), torch.stack(fracs), torch.stack(surs))


# ------------------------------------------------------------------ exact gradient
def lqr_objective(system, K: torch.Tensor, x0: torch.Tensor, sigma: float,
                  horizon: int) -> torch.Tensor:
    """``J(K) = E[G_0] = −(x0ᵀP_0(K)x0 + c_0(K))`` from the Lyapunov recursion."""
    P, c = ro.lqr_value_matrices(system, K, sigma, horizon)
    return -(x0 @ P[0] @ x0 + c[0])


def lqr_exact_gradient(system, K: torch.Tensor, x0, sigma: float, horizon: int) -> torch.Tensor:
    """``∇_K J`` by differentiating the closed form through the recursion, flattened (m·n,)."""
    K = K.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(lqr_objective(system, K, x0, sigma, horizon), K)
    return g.reshape(-1)


def fd_objective_gradient(system, policy, x0, sigma: float, horizon: int, n_rollouts: int,
                          generator: torch.Generator, step: float = 1e-4,
                          chunk: int = 8192) -> torch.Tensor:
    """Central finite differences of the Monte Carlo objective ``Ĵ(θ)`` in every parameter.

    Common random numbers: one noise sample (independent of any estimator's) is used at
    every ``θ ± step·e_j``. Returns (P,).
    """
    params = policy_params(policy)
    flat = flatten(params, batched=False)
    P = flat.numel()
    shapes = [(k, v.shape, v.numel()) for k, v in params.items()]

    def unflatten(vec):
        out, i = {}, 0
        for k, shape, n in shapes:
            out[k] = vec[i:i + n].view(shape)
            i += n
        return out

    eye = torch.eye(P, dtype=flat.dtype)
    thetas = torch.cat([flat + step * eye, flat - step * eye])  # (2P, P)

    def mc_objective(theta, eps):  # eps (T, b, m) -> summed return over the b rollouts
        p = unflatten(theta)
        x = x0.expand(eps.shape[1], -1)
        total = x.new_zeros(eps.shape[1])
        for t in range(eps.shape[0]):
            u = functional_call(policy, p, (x,)) + sigma * eps[t]
            total = total + system.reward(x, u)
            x = system.step(x, u)
        return (total + system.terminal_reward(x)).sum()

    sums = torch.zeros(2 * P, dtype=flat.dtype)
    remaining = n_rollouts
    with torch.no_grad():
        while remaining > 0:
            b = min(chunk, remaining)
            eps = ro.sample_noise(horizon, b, system.n_action, generator)
            sums += vmap(mc_objective, in_dims=(0, None))(thetas, eps)
            remaining -= b
    J = sums / n_rollouts
    return (J[:P] - J[P:]) / (2 * step)


def naive_per_rollout(loss: Callable[[int], torch.Tensor], policy, n_rollouts: int) -> torch.Tensor:
    """Reference loop: ``loss(b)`` for each rollout ``b``, one backward pass each, (B, P).

    ``loss`` maps a rollout index to a scalar built from the live policy parameters.
    """
    rows = []
    for b in range(n_rollouts):
        g = torch.autograd.grad(loss(b), list(policy.parameters()))
        rows.append(torch.cat([x.reshape(-1) for x in g]))
    return torch.stack(rows)
