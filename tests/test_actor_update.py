"""The Proposition experiment: each sub-experiment against closed forms and naive loops, the
composition in ``run``, and the claims beyond the defaults (at the default number of rollouts)."""

import numpy as np
import pytest
import torch

from vgh_lib.common import stats
from vgh_lib.driver.registry import ActorUpdateParams
from vgh_lib.experiments import actor_update
from vgh_lib.experiments.actor_update import Estimator
from vgh_lib.rollout import estimators as es

DEFAULTS = ActorUpdateParams()
SF, PD = Estimator.SF_LOO, Estimator.PD


def _run(**over):
    kw = {k: v for k, v in DEFAULTS.as_dict().items() if k != "profile"}
    kw.update(over)
    return actor_update.run(**kw)


def _lqr_samples(n_rollouts=2000, seed=0, n_state=2, n_action=1, horizon=5, sigma=0.5):
    problem = actor_update.lqr_problem(seed, n_state, n_action, sigma, horizon)
    s = es.sample(problem.system, problem.policy, problem.x0, sigma, horizon, n_rollouts,
                  torch.Generator().manual_seed(seed + 1))
    return problem, s


@pytest.mark.slow
@pytest.mark.parametrize("over", [
    {"n_state": 8, "n_action": 4, "horizon": 50, "sigma": 1.0, "system": "pendulum", "seed": 2},
    {"n_state": 3, "n_action": 2, "horizon": 33, "sigma": 0.8, "system": "tanh", "seed": 11, "group_size": 64},
])
def test_claims_hold_for_other_valid_configurations(over):
    r = _run(**over)
    assert r.ppo.identity_rel <= 1e-10
    assert r.sf_pd.z <= 3
    assert r.z[PD] <= 3 and r.z[SF] <= 3
    assert r.grpo.main_cosine >= 0.98
    assert r.nonlinear.sf_pd.z <= 3


def test_small_run_is_deterministic_and_shaped():
    small = {"n_rollouts": 2048, "horizon": 4, "n_fd_rollouts": 1000, "group_size": 12, "ppo_epochs": 3}
    a, b = _run(**small), _run(**small)
    assert a.sf_pd == b.sf_pd and a.nonlinear.sf_pd == b.nonlinear.sf_pd
    assert a.nonlinear.variance_ratio == b.nonlinear.variance_ratio
    assert a.ppo.clipfrac.shape == (4,) and a.ppo.clipfrac[0] == 0
    assert 12 in a.grpo.group_sizes and a.grpo.cosine.shape == (len(a.grpo.group_sizes),)
    assert list(a.estimators) == list(Estimator)
    assert set(a.z) == set(a.bias) == {PD, SF}
    assert all(s.cosine_curve.shape == (len(a.sizes),) for s in a.estimators.values())


def test_run_composes_the_sub_experiments_on_one_noise_stream_in_order():
    """``run`` = the parts called in order on one ``Generator(seed)``: the LQR rollouts, then
    the MLP's weights and the nonlinear rollouts (the FD reference has its own stream)."""
    kw = {"seed": 3, "n_state": 2, "n_action": 1, "horizon": 4, "sigma": 0.5}
    r = actor_update.run(**kw, n_rollouts=1200, group_size=8, system="tanh", hidden=3,
                         ppo_epochs=2, n_repeats=6, n_fd_rollouts=1000)
    gen = torch.Generator().manual_seed(3)
    p = actor_update.lqr_problem(3, 2, 1, 0.5, 4)
    s = es.sample(p.system, p.policy, p.x0, 0.5, 4, 1200, gen)
    grads = actor_update.per_rollout_gradients(p.system, p.policy, s, 8)
    sizes = stats.log_spaced_sizes(10, 1200, 10)
    want = {
        "exact": p.exact.numpy(), "sizes": sizes,
        "estimators": {e: actor_update.summarize_estimator(g, p.exact, sizes) for e, g in grads.items()},
        "sf_pd": actor_update.paired_difference(grads[SF], grads[PD], p.exact),
        "z": {e: actor_update.z_against(grads[e], p.exact) for e in (PD, SF)},
        "bias": {e: actor_update.bias_check(grads[e], 6) for e in (PD, SF)},
        "variance_ratio": actor_update.variance_ratio(grads[SF], grads[PD], 6),
        "ppo": actor_update.ppo_check(p.policy, s, p.exact, grads[SF].mean(0), 0.2, 2, 0.05),
        "grpo": actor_update.grpo_sweep(p.policy, s, p.exact, 8),
        "nonlinear": actor_update.nonlinear_check("tanh", 2, 1, 3, 3, 0.5, 4, 1200, gen, 1000),
    }

    def same(a, b, where):
        if isinstance(b, dict):
            assert list(a) == list(b), where
            for k in b:
                same(a[k], b[k], f"{where}[{k}]")
        elif hasattr(b, "__dataclass_fields__"):
            for k in b.__dataclass_fields__:
                same(getattr(a, k), getattr(b, k), f"{where}.{k}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)

    for name, value in want.items():
        same(getattr(r, name), value, name)


def test_lqr_problem_exact_gradient_matches_finite_differences_of_the_closed_form():
    p = actor_update.lqr_problem(1, 3, 2, 0.4, 6)
    K = p.policy.K.detach()
    h, fd = 1e-6, []
    for j in range(K.numel()):
        d = torch.zeros(K.numel(), dtype=K.dtype)
        d[j] = h
        d = d.view_as(K)
        fd.append((es.lqr_objective(p.system, K + d, p.x0, 0.4, 6)
                   - es.lqr_objective(p.system, K - d, p.x0, 0.4, 6)) / (2 * h))
    torch.testing.assert_close(p.exact, torch.stack(fd), rtol=1e-6, atol=1e-8)


def test_per_rollout_gradients_are_the_estimators_in_estimator_order():
    p, s = _lqr_samples(n_rollouts=50)
    g = actor_update.per_rollout_gradients(p.system, p.policy, s, 12)
    assert list(g) == list(Estimator)
    torch.testing.assert_close(g[PD], es.pathwise(p.system, p.policy, s), rtol=0, atol=0)
    for est, baseline in (("SF_NONE", "none"), ("SF_MEAN", "mean"), ("SF_LOO", "loo")):
        torch.testing.assert_close(g[Estimator[est]], es.reinforce(p.policy, s, baseline),
                                   rtol=0, atol=0)
    assert g[PD].shape == (50, 2) and g[Estimator.GRPO].shape == (48, 2)  # 4 whole groups of 12
    first = es.Samples(s.states[:, :48], s.actions[:, :48], s.returns[:, :48], s.noise[:, :48],
                       s.x0, s.sigma)
    torch.testing.assert_close(g[Estimator.GRPO], es.grpo(p.policy, first, 12), rtol=0, atol=0)


def test_summarize_estimator_against_a_naive_loop():
    rng = np.random.default_rng(0)
    exact = np.array([1.0, -0.5, 2.0])
    g = exact + rng.normal(size=(230, 3)) * 3.0
    sizes = [10, 50, 230, 1000]  # 1000 > 230 rows: the whole sample
    r = actor_update.summarize_estimator(torch.tensor(g), torch.tensor(exact), sizes)
    for n, got in zip(sizes, r.cosine_curve, strict=True):
        n = min(n, 230)
        cos = [stats.cosine(g[i * n:(i + 1) * n].mean(0), exact) for i in range(230 // n)]
        assert got == pytest.approx(np.mean(cos), rel=1e-12)
    assert r.variance == pytest.approx(g.var(0, ddof=1).sum(), rel=1e-12)
    assert r.rel_variance == pytest.approx(g.var(0, ddof=1).sum() / np.sum(g.mean(0) ** 2), rel=1e-12)
    np.testing.assert_allclose(r.mean, g.mean(0), rtol=1e-12)
    assert r.cosine == pytest.approx(stats.cosine(g.mean(0), exact), rel=1e-12)
    assert r.cosine_curve[-1] == pytest.approx(r.cosine, rel=1e-12)


def test_paired_difference_against_naive_formulas_and_a_shift():
    rng = np.random.default_rng(1)
    b = rng.normal(size=(4000, 4))
    a = b + rng.normal(size=(4000, 4)) * 0.5
    ref = np.array([3.0, 0.0, 4.0, 0.0])
    r = actor_update.paired_difference(torch.tensor(a), torch.tensor(b), torch.tensor(ref))
    d = a - b
    assert r.rel_diff == pytest.approx(np.linalg.norm(d.mean(0)) / 5.0, rel=1e-12)
    assert r.z == pytest.approx(np.linalg.norm(d.mean(0)) / np.sqrt(d.var(0, ddof=1).sum() / 4000),
                                rel=1e-12)
    assert r.z <= 3  # the same mean
    shifted = actor_update.paired_difference(torch.tensor(a + 0.05), torch.tensor(b), torch.tensor(ref))
    assert shifted.z > 3  # a shift of 0.05 per component is 6 SE at this N


def test_bias_check_against_a_naive_loop():
    rng = np.random.default_rng(2)
    g = rng.normal(size=(103, 2)) + np.array([1.0, -1.0])
    r = actor_update.bias_check(torch.tensor(g), 10)  # 10 estimates of 10 rows; 3 rows unused
    est = np.array([g[i * 10:(i + 1) * 10].mean(0) for i in range(10)])
    np.testing.assert_allclose(r.mean, est.mean(0), rtol=1e-12)
    np.testing.assert_allclose(r.se, est.std(0, ddof=1) / np.sqrt(10), rtol=1e-12)


def test_variance_ratio_and_its_jackknife_standard_error():
    rng = np.random.default_rng(3)
    b = torch.tensor(rng.normal(size=(2000, 3)))
    exact = actor_update.variance_ratio(2.0 * b, b, 20)
    assert exact.ratio == pytest.approx(4.0, rel=1e-12) and exact.se < 1e-10  # no sampling error
    a = torch.tensor(rng.normal(size=(2000, 3)) * 2.0)  # independent, true ratio 4
    r = actor_update.variance_ratio(a, b, 20)
    edges = np.linspace(0, 2000, 21).astype(int)
    loo = []
    for k in range(20):
        keep = np.r_[0:edges[k], edges[k + 1]:2000]
        loo.append(a.numpy()[keep].var(0, ddof=1).sum() / b.numpy()[keep].var(0, ddof=1).sum())
    loo = np.array(loo)
    assert r.ratio == pytest.approx(a.var(0).sum().item() / b.var(0).sum().item(), rel=1e-12)
    assert r.se == pytest.approx(np.sqrt(19 / 20 * np.sum((loo - loo.mean()) ** 2)), rel=1e-9)
    assert abs(r.ratio - 4.0) <= 3 * r.se and r.se < 0.5


def test_ppo_check_equals_the_sf_gradient_at_theta_old():
    p, s = _lqr_samples(n_rollouts=4000)
    sf = es.reinforce(p.policy, s, "loo").mean(0)
    r = actor_update.ppo_check(p.policy, s, p.exact, sf, 0.2, 5, 0.05)
    assert r.identity_rel <= 1e-10
    assert r.clipfrac.shape == r.grad_norm.shape == r.cosine.shape == (6,)
    assert r.clipfrac[0] == 0 and r.clipfrac[-1] > 0  # later epochs leave the trust region
    assert r.grad_norm[0] == pytest.approx(float(sf.norm() / p.exact.norm()), rel=1e-10)
    assert r.cosine[0] == pytest.approx(stats.cosine(sf, p.exact), rel=1e-10)
    big = actor_update.ppo_check(p.policy, s, p.exact, sf, 0.2, 5, 0.5)
    assert big.clipfrac[1] > r.clipfrac[1]  # a larger step clips more terms at once


def test_grpo_group_sizes_and_sweep():
    assert actor_update.grpo_group_sizes(12, 4096) == [2, 4, 8, 12, 16, 32, 64]
    assert actor_update.grpo_group_sizes(16, 100) == [2, 4, 8, 16]  # at least 4 groups
    assert actor_update.grpo_group_sizes(32, 100) == [2, 4, 8, 16, 32]
    p, s = _lqr_samples(n_rollouts=1000)
    r = actor_update.grpo_sweep(p.policy, s, p.exact, 12)
    assert r.group_sizes == actor_update.grpo_group_sizes(12, 1000)
    for G, cos, scale in zip(r.group_sizes, r.cosine, r.scale, strict=True):
        m = (1000 // G) * G
        first = es.Samples(s.states[:, :m], s.actions[:, :m], s.returns[:, :m], s.noise[:, :m],
                           s.x0, s.sigma)
        mean = es.grpo(p.policy, first, G).mean(0)
        assert cos == stats.cosine(mean, p.exact)
        assert scale == float(mean.norm() / p.exact.norm())
    i = r.group_sizes.index(12)
    assert r.main_cosine == r.cosine[i] and r.main_scale == r.scale[i]
    assert r.main_cosine > 0.9


def test_nonlinear_check_agrees_with_finite_differences():
    r = actor_update.nonlinear_check("tanh", 2, 1, 0, 4, 0.5, 5, 4000,
                                     torch.Generator().manual_seed(3), 2000)
    assert r.system == "tanh" and r.n_params == 4 * 2 + 4 + 1 * 4  # W1, b1, W2
    assert r.fd.shape == r.pd_mean.shape == r.sf_mean.shape == (r.n_params,)
    assert r.pd_cosine == stats.cosine(r.pd_mean, r.fd) and r.pd_cosine > 0.99
    assert r.sf_cosine == stats.cosine(r.sf_mean, r.fd) and r.sf_cosine > 0.99
    d = np.linalg.norm(r.sf_mean - r.pd_mean)
    assert r.sf_pd.rel_diff == pytest.approx(d / np.linalg.norm(r.fd), rel=1e-10)
    assert r.sf_pd.z <= 3 and r.variance_ratio > 1


def test_z_detects_a_biased_estimator():
    """The z-scores the claims use can fail: the unbiased SF estimate passes, and the same
    estimate shifted by 5 % of ‖∇J‖ (a stand-in for a biased estimator) is more than 3 SE
    from ∇J at this N."""
    p, s = _lqr_samples(n_rollouts=20_000, n_state=2, n_action=1, horizon=6)
    g = es.reinforce(p.policy, s, "loo")
    assert actor_update.z_against(g, p.exact) <= 3
    se = g.std(0) / np.sqrt(g.shape[0])
    assert actor_update.z_against(g, p.exact) == stats.norm_z(g.mean(0) - p.exact, se)
    biased = g + 0.05 * p.exact.norm() * torch.ones_like(g[0]) / np.sqrt(g.shape[1])
    assert actor_update.z_against(biased, p.exact) > 3
