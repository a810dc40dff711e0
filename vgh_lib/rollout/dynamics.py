"""Differentiable rollouts with additive Gaussian noise, and their BPTT costates.

Serves book/theory.md §1 (Theorem 1, reconstructed): with actions
``u_t = μ_θ(x_t) + σ ε_t`` and the noise held fixed, the return-to-go
``G_t = g_t(x_t; ε_{t:T-1})`` is differentiable in ``x_t``; its gradient, the
costate ``λ_t = ∂g_t/∂x_t``, satisfies ``E[λ_t | x_t = x] = ∇V_t(x)``.

Everything is batched over rollouts (leading dimension ``B``) and runs in
float64. Shapes: states ``(B, n)``, actions ``(B, m)``, noise ``(T, B, m)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

DTYPE = torch.float64


# --------------------------------------------------------------------------- systems
class QuadraticCostSystem:
    """Base: rewards ``r = -(xᵀQx + uᵀRu)`` and terminal ``r_T = -xᵀQ_T x``."""

    name = "quadratic"

    def __init__(self, Q: torch.Tensor, R: torch.Tensor, QT: torch.Tensor):
        self.Q, self.R, self.QT = Q, R, QT
        self.n_state = Q.shape[0]
        self.n_action = R.shape[0]

    def step(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def reward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return -(((x @ self.Q) * x).sum(-1) + ((u @ self.R) * u).sum(-1))  # (B,)

    def terminal_reward(self, x: torch.Tensor) -> torch.Tensor:
        return -((x @ self.QT) * x).sum(-1)  # (B,)


class LQRSystem(QuadraticCostSystem):
    """Linear dynamics ``x_{t+1} = A x_t + B u_t`` with quadratic rewards."""

    name = "lqr"

    def __init__(self, A, B, Q, R, QT):
        super().__init__(Q, R, QT)
        self.A, self.B = A, B

    def step(self, x, u):
        return x @ self.A.T + u @ self.B.T  # (B, n)


class TanhSystem(LQRSystem):
    """A saturating plant ``x_{t+1} = tanh(A x_t + B u_t)`` with quadratic rewards."""

    name = "tanh"

    def step(self, x, u):
        return torch.tanh(x @ self.A.T + u @ self.B.T)


class PendulumSystem(QuadraticCostSystem):
    """A damped pendulum, state ``(θ, ω)``, torque ``u``, explicit Euler with step ``dt``.

    ``θ' = θ + dt ω``, ``ω' = ω + dt (−(g/l) sin θ − b ω + u)``. Always 2 states, 1 action.
    """

    name = "pendulum"

    def __init__(self, dt: float = 0.05, g_over_l: float = 9.81, damping: float = 0.2):
        super().__init__(torch.diag(torch.tensor([1.0, 0.1], dtype=DTYPE)),
                         torch.tensor([[0.01]], dtype=DTYPE),
                         torch.diag(torch.tensor([1.0, 0.1], dtype=DTYPE)))
        self.dt, self.g_over_l, self.damping = dt, g_over_l, damping

    def step(self, x, u):
        theta, omega = x[:, 0], x[:, 1]
        omega_next = omega + self.dt * (-self.g_over_l * torch.sin(theta)
                                        - self.damping * omega + u[:, 0])
        return torch.stack([theta + self.dt * omega, omega_next], dim=-1)


# -------------------------------------------------------------------------- policies
class LinearPolicy(nn.Module):
    """Mean action ``μ(x) = K x``."""

    def __init__(self, K: torch.Tensor):
        super().__init__()
        self.K = nn.Parameter(K.clone())

    def forward(self, x):
        return x @ self.K.T  # (B, m)


class MLPPolicy(nn.Module):
    """Mean action ``μ(x) = W₂ tanh(W₁ x + b₁)``: a small nonlinear policy."""

    def __init__(self, n_state: int, n_action: int, hidden: int = 16,
                 generator: torch.Generator | None = None, scale: float = 0.5):
        super().__init__()
        g = generator
        self.W1 = nn.Parameter(torch.randn(hidden, n_state, generator=g, dtype=DTYPE)
                               * scale / math.sqrt(n_state))
        self.b1 = nn.Parameter(torch.zeros(hidden, dtype=DTYPE))
        self.W2 = nn.Parameter(torch.randn(n_action, hidden, generator=g, dtype=DTYPE)
                               * scale / math.sqrt(hidden))

    def forward(self, x):
        return torch.tanh(x @ self.W1.T + self.b1) @ self.W2.T  # (B, m)


# ----------------------------------------------------------------------- constructors
def _random_stable(n: int, radius: float, g: torch.Generator) -> torch.Tensor:
    M = torch.randn(n, n, generator=g, dtype=DTYPE)
    rho = torch.linalg.eigvals(M).abs().max().real
    return M * (radius / rho)


def make_problem(system: str, n_state: int, n_action: int, seed: int,
                 radius: float = 0.9) -> tuple[QuadraticCostSystem, LinearPolicy, torch.Tensor]:
    """A random system with a stabilising linear policy and a start state ``x0``.

    ``system`` is ``"lqr"``, ``"tanh"`` or ``"pendulum"`` (the pendulum ignores
    ``n_state``/``n_action``: it has 2 and 1). The closed loop ``A + BK`` has spectral
    radius ``radius`` for the linear systems, and ``‖x0‖ = 1`` (the pendulum starts near
    θ = 0.8 instead). The policy is *not* the
    optimal one, so the policy gradient is non-zero.
    """
    g = torch.Generator().manual_seed(seed)
    if system == "pendulum":
        sys_ = PendulumSystem()
        K = torch.tensor([[-2.0, -0.5]], dtype=DTYPE) + 0.3 * torch.randn(1, 2, generator=g, dtype=DTYPE)
        x0 = torch.tensor([0.8, 0.0], dtype=DTYPE) + 0.2 * torch.randn(2, generator=g, dtype=DTYPE)
        return sys_, LinearPolicy(K), x0
    if system not in ("lqr", "tanh"):
        raise ValueError(f"system must be 'lqr', 'tanh' or 'pendulum', got {system!r}")
    B = torch.randn(n_state, n_action, generator=g, dtype=DTYPE) / math.sqrt(n_state)
    K = 0.3 * torch.randn(n_action, n_state, generator=g, dtype=DTYPE) / math.sqrt(n_state)
    closed = _random_stable(n_state, radius, g)
    A = closed - B @ K  # so that A + BK = closed has spectral radius `radius`
    Q = torch.eye(n_state, dtype=DTYPE)
    R = 0.1 * torch.eye(n_action, dtype=DTYPE)
    QT = torch.eye(n_state, dtype=DTYPE)
    x0 = torch.randn(n_state, generator=g, dtype=DTYPE)
    x0 = x0 / x0.norm()
    cls = LQRSystem if system == "lqr" else TanhSystem
    return cls(A, B, Q, R, QT), LinearPolicy(K), x0


# -------------------------------------------------------------------------- rollouts
@dataclass
class Trajectory:
    """A batch of rollouts. ``states`` (T+1, B, n), ``actions`` (T, B, m),
    ``rewards`` (T, B), ``terminal`` (B,), ``returns`` (T+1, B) = return-to-go G_t."""

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminal: torch.Tensor
    returns: torch.Tensor


def sample_noise(horizon: int, batch: int, n_action: int, generator: torch.Generator) -> torch.Tensor:
    """i.i.d. standard normal action noise ``ε``, shape (T, B, m)."""
    return torch.randn(horizon, batch, n_action, generator=generator, dtype=DTYPE)


def _simulate(system, policy, x0, noise, sigma):
    """Roll out and keep the per-step state tensors (graph nodes) for autograd."""
    x = x0
    states, actions, rewards = [x], [], []
    for t in range(noise.shape[0]):
        u = policy(x) + sigma * noise[t]  # (B, m): additive-noise parameterisation
        rewards.append(system.reward(x, u))
        x = system.step(x, u)
        states.append(x)
        actions.append(u)
    return states, actions, rewards, system.terminal_reward(x)


def rollout(system, policy, x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> Trajectory:
    """Batched rollout from ``x0`` ((n,) or (B, n)) under fixed ``noise`` (T, B, m)."""
    x0 = _broadcast_start(x0, noise.shape[1])
    states, actions, rewards, terminal = _simulate(system, policy, x0, noise, sigma)
    B = x0.shape[0]
    rewards_t = torch.stack(rewards) if rewards else x0.new_zeros(0, B)  # (T, B)
    actions_t = torch.stack(actions) if actions else x0.new_zeros(0, B, system.n_action)
    # G_t = Σ_{s≥t} r_s + r_T: reverse cumulative sum
    returns = torch.cat([rewards_t, terminal[None]]).flip(0).cumsum(0).flip(0)  # (T+1, B)
    return Trajectory(torch.stack(states), actions_t, rewards_t, terminal, returns)


def _broadcast_start(x0: torch.Tensor, batch: int) -> torch.Tensor:
    return x0.expand(batch, -1).clone() if x0.dim() == 1 else x0.clone()


def costates(system, policy, x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """BPTT costates ``λ_t = ∂g_t/∂x_t`` for every step and rollout, shape (T+1, B, n).

    One backward pass of ``Σ_b G_0^b``: rollouts are independent, and rewards before
    step ``t`` do not depend on ``x_t``, so ``∂(Σ_b G_0^b)/∂x_t^b = ∂g_t^b/∂x_t^b``.
    """
    x0 = _broadcast_start(x0, noise.shape[1]).requires_grad_(True)
    with torch.enable_grad():
        states, _, rewards, terminal = _simulate(system, policy, x0, noise, sigma)
        G0 = torch.stack(rewards).sum(0) + terminal  # (B,)
        grads = torch.autograd.grad(G0.sum(), states)
    return torch.stack(grads)  # (T+1, B, n)


def costate0_samples(system, policy, x0, sigma: float, horizon: int, n_rollouts: int,
                     generator: torch.Generator, chunk: int = 16384) -> torch.Tensor:
    """Per-rollout ``λ_0`` at a fixed start ``x0`` for ``n_rollouts`` noise draws, shape (N, n).

    Computed in chunks so that memory stays bounded for large ``N``.
    """
    out = []
    for b in _chunks(n_rollouts, chunk):
        eps = sample_noise(horizon, b, system.n_action, generator)
        out.append(costates(system, policy, x0, eps, sigma)[0].detach())
    return torch.cat(out)


def _chunks(total: int, chunk: int):
    while total > 0:
        yield min(chunk, total)
        total -= chunk


# ---------------------------------------------------------------------- LQR closed form
def lqr_value_matrices(system: LQRSystem, K: torch.Tensor, sigma: float,
                       horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``V_t(x) = −(xᵀP_t x + c_t)`` under ``u = Kx + σε`` (Lyapunov recursion).

    ``P_T = Q_T``, ``P_t = Q + KᵀRK + (A+BK)ᵀP_{t+1}(A+BK)``,
    ``c_t = c_{t+1} + σ²(tr R + tr(BᵀP_{t+1}B))``. Returns P (T+1, n, n), c (T+1,).
    Differentiable in ``K`` (used for the exact policy gradient).
    """
    A, B, Q, R = system.A, system.B, system.Q, system.R
    closed = A + B @ K
    P = [system.QT]
    c = [torch.zeros((), dtype=DTYPE)]
    for _ in range(horizon):
        Pn = P[-1]
        P.append(Q + K.T @ R @ K + closed.T @ Pn @ closed)
        c.append(c[-1] + sigma ** 2 * (torch.trace(R) + torch.trace(B.T @ Pn @ B)))
    return torch.stack(P[::-1]), torch.stack(c[::-1])


def lqr_value_gradient(P_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``∇V_t(x) = −2 P_t x`` for a state (n,) or a batch (B, n)."""
    return -2.0 * x @ P_t.T


def lqr_adjoint_costates(system: LQRSystem, K: torch.Tensor, traj: Trajectory) -> torch.Tensor:
    """The adjoint recursion of book/theory.md §1, written out for the LQR case.

    ``λ_T = ∇r_T = −2Q_T x_T``;
    ``λ_t = ∇_x r + Kᵀ∇_u r + (A + BK)ᵀ λ_{t+1}`` with ``∇_x r = −2Qx_t``, ``∇_u r = −2Ru_t``.
    Returns (T+1, B, n); it must equal :func:`costates` (autograd) to rounding.
    """
    A, B, Q, R = system.A, system.B, system.Q, system.R
    closed = A + B @ K
    T = traj.actions.shape[0]
    lam = [-2.0 * traj.states[T] @ system.QT]
    for t in reversed(range(T)):
        x, u = traj.states[t], traj.actions[t]
        grad_x_r = -2.0 * x @ Q
        grad_u_r = -2.0 * u @ R
        lam.append(grad_x_r + grad_u_r @ K + lam[-1] @ closed)  # row-vector form of the recursion
    return torch.stack(lam[::-1])


# ------------------------------------------------------------ nonlinear reference value
def fd_value_gradient(system, policy, x0: torch.Tensor, sigma: float, horizon: int,
                      n_rollouts: int, generator: torch.Generator, step: float = 1e-4,
                      chunk: int = 4096) -> torch.Tensor:
    """Central finite difference of the Monte Carlo value ``V̂(x) = mean_b G_0(x; ε_b)``.

    Common random numbers: each noise draw ε_b is used at every ``x0 ± step·e_i``, so
    the difference measures the slope of one smooth function, not Monte Carlo noise.
    The noise is drawn from ``generator`` (independent of any costate sample). Returns (n,).
    """
    n = x0.shape[0]
    eye = torch.eye(n, dtype=DTYPE)
    starts = torch.cat([x0 + step * eye, x0 - step * eye])  # (2n, n)
    total = torch.zeros(2 * n, dtype=DTYPE)
    for b in _chunks(n_rollouts, chunk):
        eps = sample_noise(horizon, b, system.n_action, generator)
        batch_starts = starts.repeat_interleave(b, dim=0)  # (2n·b, n): start i repeated b times
        batch_eps = eps.repeat(1, 2 * n, 1)  # (T, 2n·b, m): the same b draws for every start
        with torch.no_grad():
            G0 = rollout(system, policy, batch_starts, batch_eps, sigma).returns[0]
        total += G0.view(2 * n, b).sum(1)
    value = total / n_rollouts  # V̂ at each shifted start
    return (value[:n] - value[n:]) / (2 * step)
