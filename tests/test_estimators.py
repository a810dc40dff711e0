"""Estimators of book/theory.md §2 against naive loops, closed forms and finite differences."""

import math

import pytest
import torch

from vgh_lib.common import stats
from vgh_lib.rollout import dynamics as ro
from vgh_lib.rollout import estimators as es


def _setup(system="lqr", policy="linear", B=6, T=4, sigma=0.6, seed=0):
    sys_, pol, x0 = ro.make_problem(system, 3, 2, seed)
    if policy == "mlp":
        pol = ro.MLPPolicy(sys_.n_state, sys_.n_action, 5, generator=torch.Generator().manual_seed(1))
    s = es.sample(sys_, pol, x0, sigma, T, B, torch.Generator().manual_seed(seed + 7))
    return sys_, pol, x0, s


@pytest.mark.parametrize("system,policy", [("lqr", "linear"), ("tanh", "mlp"), ("pendulum", "mlp")])
def test_pathwise_matches_naive_loop(system, policy):
    sys_, pol, x0, s = _setup(system, policy)

    def loss(b):
        return ro.rollout(sys_, pol, x0, s.noise[:, b:b + 1], s.sigma).returns[0].sum()

    torch.testing.assert_close(es.pathwise(sys_, pol, s), es.naive_per_rollout(loss, pol, 6))


@pytest.mark.parametrize("baseline", es.BASELINES)
def test_reinforce_matches_naive_loop(baseline):
    sys_, pol, x0, s = _setup("tanh", "mlp")
    G = s.returns[:-1]
    b_t = es.baseline_values(G, baseline)

    def loss(b):
        total = 0.0
        for t in range(s.actions.shape[0]):
            mean = pol(s.states[t, b:b + 1])[0]
            logp = -((s.actions[t, b] - mean) ** 2).sum() / (2 * s.sigma ** 2)
            total = total + logp * (G[t, b] - b_t[t, b])
        return total

    torch.testing.assert_close(es.reinforce(pol, s, baseline), es.naive_per_rollout(loss, pol, 6))


def test_score_of_shift_policy_is_noise_over_sigma():
    """∇_θ log π(u|x) = (∂μ/∂θ)ᵀ ε/σ: for μ = Kx this is ε xᵀ / σ."""
    sys_, pol, x0, s = _setup(B=3, T=1)
    g = es.score_function(pol, s, torch.ones(1, 3))  # (B, m·n)
    for b in range(3):
        expected = torch.outer(s.noise[0, b], s.states[0, b]) / s.sigma
        torch.testing.assert_close(g[b], expected.reshape(-1))


def test_baselines_by_hand():
    G = torch.tensor([[1.0, 2.0, 6.0]])
    torch.testing.assert_close(es.baseline_values(G, "mean"), torch.full((1, 3), 3.0))
    torch.testing.assert_close(es.baseline_values(G, "loo"), torch.tensor([[4.0, 3.5, 1.5]]))
    assert torch.all(es.baseline_values(G, "none") == 0)
    with pytest.raises(ValueError, match="baseline must be one of"):
        es.baseline_values(G, "median")


def test_grpo_advantages_by_hand_and_against_loop():
    r = torch.tensor([1.0, 3.0, 0.0, 0.0, 2.0, 4.0], dtype=torch.float64)
    adv = es.grpo_advantages(r, 2)
    torch.testing.assert_close(adv[:2], torch.tensor([-1.0, 1.0], dtype=torch.float64))
    assert torch.all(adv[2:4] == 0)  # equal rewards in a group: no signal
    rng = torch.Generator().manual_seed(0)
    r = torch.randn(24, generator=rng, dtype=torch.float64)
    adv = es.grpo_advantages(r, 6)
    for g in range(4):
        grp = r[6 * g:6 * g + 6].tolist()
        mu = sum(grp) / 6
        sd = math.sqrt(sum((x - mu) ** 2 for x in grp) / 6)
        for i in range(6):
            assert adv[6 * g + i].item() == pytest.approx((grp[i] - mu) / (sd + 1e-8), rel=1e-12)
    with pytest.raises(ValueError, match="groups of 5"):
        es.grpo_advantages(r, 5)


def test_ppo_clip_by_hand():
    """One step, one rollout: min(ρA, clip(ρ)A) picks the pessimistic term."""
    pol = ro.LinearPolicy(torch.zeros(1, 1, dtype=ro.DTYPE))
    s = es.Samples(states=torch.ones(1, 2, 1, dtype=ro.DTYPE),
                   actions=torch.tensor([[[1.0], [1.0]]], dtype=ro.DTYPE),
                   returns=torch.zeros(2, 2, dtype=ro.DTYPE), noise=torch.zeros(1, 2, 1, dtype=ro.DTYPE),
                   x0=torch.ones(1, dtype=ro.DTYPE), sigma=1.0)
    logp_old = torch.full((1, 2), math.log(1.0 / 2.0), dtype=ro.DTYPE) - 0.5
    # log π_new(u=1 | x=1, K=0) = −1/2, so ratio = exp(−1/2 − (log ½ − 1/2)) = 2
    adv = torch.tensor([[1.0, -1.0]], dtype=ro.DTYPE)
    params = es.policy_params(pol)
    sur, frac = es.ppo_surrogate(pol, params, s, adv, logp_old, clip=0.2)
    # A > 0: min(2, 1.2) = 1.2; A < 0: min(−2, −1.2) = −2. Mean over rollouts: −0.4
    assert sur.item() == pytest.approx(-0.4)
    assert frac.item() == 1.0


def test_ppo_gradient_at_old_policy_is_sf_gradient():
    sys_, pol, x0, s = _setup("tanh", "mlp", B=32)
    G = s.returns[:-1]
    adv = G - es.baseline_values(G, "loo")
    trace = es.ppo_epochs(pol, s, adv, clip=0.2, epochs=3, lr=0.05)
    sf = es.score_function(pol, s, adv).mean(0)
    torch.testing.assert_close(trace.grads[0], sf, rtol=1e-10, atol=1e-12)
    assert trace.clipfrac[0] == 0
    assert trace.clipfrac[-1] > 0  # moving θ pushes ratios out of the trust region


def test_exact_lqr_gradient_against_finite_differences():
    sys_, pol, x0 = ro.make_problem("lqr", 3, 2, 4)
    K = pol.K.detach()
    g = es.lqr_exact_gradient(sys_, K, x0, 0.4, 7)
    h = 1e-6
    fd = torch.zeros_like(K).reshape(-1)
    for j in range(fd.numel()):
        e = torch.zeros_like(fd)
        e[j] = h
        e = e.view_as(K)
        fd[j] = (es.lqr_objective(sys_, K + e, x0, 0.4, 7) - es.lqr_objective(sys_, K - e, x0, 0.4, 7)) / (2 * h)
    torch.testing.assert_close(g, fd, rtol=1e-6, atol=1e-6)


def test_lqr_objective_matches_monte_carlo():
    sys_, pol, x0 = ro.make_problem("lqr", 2, 1, 1)
    J = es.lqr_objective(sys_, pol.K.detach(), x0, 0.5, 6)
    s = es.sample(sys_, pol, x0, 0.5, 6, 100_000, torch.Generator().manual_seed(3))
    G0 = s.returns[0]
    assert abs(G0.mean() - J) < 4 * G0.std() / math.sqrt(G0.numel())


def test_fd_objective_gradient_matches_exact_on_lqr():
    sys_, pol, x0 = ro.make_problem("lqr", 2, 1, 2)
    fd = es.fd_objective_gradient(sys_, pol, x0, 0.3, 5, 20_000, torch.Generator().manual_seed(0))
    exact = es.lqr_exact_gradient(sys_, pol.K, x0, 0.3, 5)
    assert stats.relative_error(fd, exact) < 0.03


def test_sf_and_pd_means_agree_with_exact_gradient():
    """The Proposition, numerically: both means land on ∇J within Monte Carlo error."""
    sys_, pol, x0 = ro.make_problem("lqr", 2, 1, 0)
    s = es.sample(sys_, pol, x0, 0.5, 6, 40_000, torch.Generator().manual_seed(5))
    exact = es.lqr_exact_gradient(sys_, pol.K, x0, 0.5, 6)
    for g in (es.pathwise(sys_, pol, s), es.reinforce(pol, s, "loo")):
        z = (g.mean(0) - exact) / (g.std(0) / math.sqrt(g.shape[0]))
        assert z.abs().max() < 4.5


@pytest.mark.parametrize("h", [lambda e: e ** 2, lambda e: torch.sin(3 * e),
                               lambda e: torch.exp(0.5 * e), lambda e: e ** 3 - e])
def test_steins_lemma_numerically(h):
    """E[ε h(ε)] = E[h'(ε)] for ε ~ N(0, 1)."""
    eps = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps.requires_grad_(True)
    values = h(eps)
    (dh,) = torch.autograd.grad(values.sum(), eps)
    lhs = (eps * values).detach()
    diff = lhs - dh
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(diff.numel())
