"""Theorem 1 machinery: costates, the adjoint recursion and the LQR closed form."""

import math

import pytest
import torch

from vgh_lib.rollout import dynamics as ro


def _problem(system="lqr", n=3, m=2, seed=0):
    return ro.make_problem(system, n, m, seed)


@pytest.mark.parametrize("system", ["lqr", "tanh", "pendulum"])
def test_batched_costates_equal_per_sample_autograd(system, gen):
    sys_, pol, _ = _problem(system)
    T, B = 6, 5
    x0 = torch.randn(B, sys_.n_state, generator=gen, dtype=ro.DTYPE)
    eps = ro.sample_noise(T, B, sys_.n_action, gen)
    lam = ro.costates(sys_, pol, x0, eps, 0.7)  # (T+1, B, n)
    for b in range(B):  # naive: one rollout at a time, gradient of g_t w.r.t. x_t
        for t in range(T + 1):
            xt = ro.rollout(sys_, pol, x0[b:b + 1], eps[:, b:b + 1], 0.7).states[t].detach()
            xt.requires_grad_(True)
            g_t = ro.rollout(sys_, pol, xt, eps[t:, b:b + 1], 0.7).returns[0].sum()
            (grad,) = torch.autograd.grad(g_t, xt)
            torch.testing.assert_close(lam[t, b], grad[0], rtol=1e-10, atol=1e-12)


def test_adjoint_recursion_equals_autograd(gen):
    sys_, pol, _ = _problem(n=4, m=2)
    x0 = torch.randn(7, 4, generator=gen, dtype=ro.DTYPE)
    eps = ro.sample_noise(9, 7, 2, gen)
    traj = ro.rollout(sys_, pol, x0, eps, 0.5)
    lam = ro.costates(sys_, pol, x0, eps, 0.5)
    torch.testing.assert_close(ro.lqr_adjoint_costates(sys_, pol.K.detach(), traj), lam,
                               rtol=1e-12, atol=1e-12)


def test_noise_free_costates_equal_closed_form_at_every_step(gen):
    """With σ = 0, g_t(x) = −xᵀP_t x exactly, so λ_t = −2P_t x_t for every t."""
    sys_, pol, _ = _problem(n=4, m=3)
    T = 8
    x0 = torch.randn(6, 4, generator=gen, dtype=ro.DTYPE)
    eps = ro.sample_noise(T, 6, 3, gen)
    lam = ro.costates(sys_, pol, x0, eps, 0.0)
    traj = ro.rollout(sys_, pol, x0, eps, 0.0)
    P, c = ro.lqr_value_matrices(sys_, pol.K.detach(), 0.0, T)
    assert torch.all(c == 0)
    for t in range(T + 1):
        torch.testing.assert_close(lam[t], ro.lqr_value_gradient(P[t], traj.states[t]),
                                   rtol=1e-10, atol=1e-12)


def test_costates_match_value_gradient_in_expectation_at_every_step(gen):
    """Theorem 1 at every t: λ_t − (−2P_t x_t) has mean zero (within 4 standard errors)."""
    sys_, pol, _ = _problem(n=2, m=1, seed=3)
    T, B, sigma = 5, 40000, 0.8
    x0 = torch.randn(B, 2, generator=gen, dtype=ro.DTYPE)
    eps = ro.sample_noise(T, B, 1, gen)
    lam = ro.costates(sys_, pol, x0, eps, sigma)
    traj = ro.rollout(sys_, pol, x0, eps, sigma)
    P, _ = ro.lqr_value_matrices(sys_, pol.K.detach(), sigma, T)
    for t in range(T + 1):
        resid = lam[t] - ro.lqr_value_gradient(P[t], traj.states[t])  # (B, n)
        z = resid.mean(0) / (resid.std(0) / math.sqrt(B) + 1e-300)
        assert z.abs().max() < 4.5, (t, z)
        if t < T:  # the residual is not identically zero: there is noise to average
            assert resid.std(0).max() > 1e-3


@pytest.mark.parametrize("horizon,sigma", [(1, 0.3), (4, 1.0), (10, 0.5)])
def test_lyapunov_recursion_matches_brute_force_monte_carlo(horizon, sigma, gen):
    sys_, pol, x0 = _problem(n=3, m=2, seed=horizon)
    P, c = ro.lqr_value_matrices(sys_, pol.K.detach(), sigma, horizon)
    B = 200_000
    eps = ro.sample_noise(horizon, B, 2, gen)
    with torch.no_grad():
        G0 = ro.rollout(sys_, pol, x0, eps, sigma).returns[0]
    exact = -(x0 @ P[0] @ x0 + c[0])
    se = G0.std() / math.sqrt(B)
    assert abs(G0.mean() - exact) < 4 * se
    # c_0 > 0 and grows as σ² exactly (P does not depend on σ): the noise costs reward
    assert c[0] > 0
    P2, c2 = ro.lqr_value_matrices(sys_, pol.K.detach(), 2 * sigma, horizon)
    torch.testing.assert_close(P2, P)
    torch.testing.assert_close(c2, 4 * c)


def test_value_at_later_steps_is_the_shorter_horizon_value():
    sys_, pol, _ = _problem()
    P, c = ro.lqr_value_matrices(sys_, pol.K.detach(), 0.4, 6)
    P2, c2 = ro.lqr_value_matrices(sys_, pol.K.detach(), 0.4, 4)
    torch.testing.assert_close(P[2], P2[0])
    torch.testing.assert_close(c[2], c2[0])


def test_returns_to_go_are_reverse_cumulative_sums(gen):
    sys_, pol, x0 = _problem("tanh")
    eps = ro.sample_noise(5, 3, 2, gen)
    traj = ro.rollout(sys_, pol, x0, eps, 0.5)
    for t in range(6):
        expected = traj.rewards[t:].sum(0) + traj.terminal
        torch.testing.assert_close(traj.returns[t], expected)


def test_fd_value_gradient_matches_closed_form_on_lqr(gen):
    sys_, pol, x0 = _problem(n=3, m=1, seed=5)
    sigma, T = 0.5, 6
    fd = ro.fd_value_gradient(sys_, pol, x0, sigma, T, 100_000, gen, step=1e-4)
    P, _ = ro.lqr_value_matrices(sys_, pol.K.detach(), sigma, T)
    exact = ro.lqr_value_gradient(P[0], x0)
    assert (fd - exact).norm() / exact.norm() < 0.03


def test_fd_with_common_random_numbers_is_exact_for_zero_noise(gen):
    sys_, pol, x0 = _problem(n=2, m=1, seed=2)
    fd = ro.fd_value_gradient(sys_, pol, x0, 0.0, 5, 10, gen, step=1e-5)
    P, _ = ro.lqr_value_matrices(sys_, pol.K.detach(), 0.0, 5)
    torch.testing.assert_close(fd, ro.lqr_value_gradient(P[0], x0), rtol=1e-7, atol=1e-8)


def test_closed_loop_has_requested_spectral_radius():
    sys_, pol, _ = _problem(n=5, m=2, seed=9)
    closed = sys_.A + sys_.B @ pol.K.detach()
    assert torch.linalg.eigvals(closed).abs().max().item() == pytest.approx(0.9, rel=1e-10)


def test_make_problem_rejects_unknown_system():
    with pytest.raises(ValueError, match="system must be"):
        ro.make_problem("cartpole", 2, 1, 0)


def test_costate0_samples_are_reproducible_and_chunked_samples_are_costates():
    sys_, pol, x0 = _problem()
    a = ro.costate0_samples(sys_, pol, x0, 0.5, 4, 100, torch.Generator().manual_seed(1), chunk=100)
    b = ro.costate0_samples(sys_, pol, x0, 0.5, 4, 100, torch.Generator().manual_seed(1), chunk=100)
    torch.testing.assert_close(a, b)
    # chunks draw their noise in turn: the last chunk's rows are the costates of its own noise
    g = torch.Generator().manual_seed(1)
    c = ro.costate0_samples(sys_, pol, x0, 0.5, 4, 100, g, chunk=30)
    g2 = torch.Generator().manual_seed(1)
    for b_ in (30, 30, 30):
        ro.sample_noise(4, b_, 2, g2)
    last = ro.costates(sys_, pol, x0, ro.sample_noise(4, 10, 2, g2), 0.5)[0]
    assert c.shape == (100, 3)
    torch.testing.assert_close(c[90:], last)
