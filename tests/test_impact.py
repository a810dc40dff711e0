import math

import numpy as np
import pytest
import scipy.stats
import torch

from vgh_lib import impact, stats


def test_headroom_on_hand_made_tables():
    # 4 samples per prompt; k = 2
    # prompt 1: 0 successes -> pass@1 0, pass@2 0; prompt 2: all -> 1, 1;
    # prompt 3: 1 of 4 -> pass@1 1/4, pass@2 = 1 − C(3,2)/C(4,2) = 1/2
    assert impact.headroom([0, 4, 1], 4, 2) == pytest.approx((0 + 0 + 0.25) / 3)
    assert impact.headroom([0, 0], 8, 4) == 0.0  # never succeeds: no headroom
    assert impact.headroom([8, 8], 8, 4) == 0.0  # always succeeds: none left


def test_reward_std_signal():
    assert impact.reward_std_signal([0, 4, 2], 4) == pytest.approx((0 + 0 + 0.5) / 3)


def test_unbiased_norm_is_unbiased_on_a_toy_problem():
    """Noisy unbiased estimates of a known gradient: ⟨ĝ_A, ĝ_B⟩ averages to ‖g‖², ‖ĝ‖² does not."""
    g = torch.tensor([0.3, -0.4, 0.0, 0.1], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    inner, naive = [], []
    for _ in range(20000):
        a = g + torch.randn(4, generator=gen, dtype=torch.float64)
        b = g + torch.randn(4, generator=gen, dtype=torch.float64)
        inner.append(float(a @ b))
        naive.append(float(a @ a))
    inner, naive = np.array(inner), np.array(naive)
    true = float(g @ g)
    assert abs(inner.mean() - true) < 4 * inner.std() / math.sqrt(inner.size)
    assert naive.mean() - true > 3.5  # biased by tr Var = 4
    assert impact.unbiased_norm(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])) == 0.0
    assert impact.unbiased_norm(torch.tensor([3.0, 0.0]), torch.tensor([3.0, 4.0])) == 3.0


def test_fit_alpha_and_leave_one_out():
    i = np.array([1.0, 2.0, 3.0])
    assert impact.fit_alpha(i, 2 * i) == pytest.approx(2.0)
    assert impact.leave_one_out_error(i, 2 * i) == pytest.approx(0.0, abs=1e-12)
    g = np.array([1.0, 2.0, 7.0])
    loo = [impact.fit_alpha(np.delete(i, k), np.delete(g, k)) * i[k] - g[k] for k in range(3)]
    assert impact.leave_one_out_error(i, g) == pytest.approx(np.sqrt(np.mean(np.square(loo))))


def test_statistics_helpers_against_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.normal(size=12)
        y = x + rng.normal(size=12)
        x[3] = x[5]  # a tie
        assert stats.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
        assert stats.pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y).statistic, abs=1e-12)
        np.testing.assert_allclose(stats.ranks(x), scipy.stats.rankdata(x))
    assert math.isnan(stats.spearman([1, 1, 1], [1, 2, 3]))


def test_correlate_intervals_contain_the_estimate():
    x = np.arange(10.0)
    y = x + np.random.default_rng(1).normal(scale=2, size=10)
    c = impact.correlate("x", x, y, n_boot=500)
    assert c.spearman_ci[0] <= c.spearman <= c.spearman_ci[1]
    assert c.pearson_ci[0] <= c.pearson <= c.pearson_ci[1]


def test_bootstrap_mean_ci_covers_the_mean():
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(200):
        lo, hi = stats.bootstrap_mean_ci(rng.normal(size=50), n_boot=400, seed=int(rng.integers(1e9)))
        hits += lo <= 0 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_inverted_u_margin():
    m = [0.0, 0.1, 0.3, 0.05]
    se = [0.01, 0.01, 0.02, 0.01]
    expected = min(0.3 - 0.0 - math.hypot(0.02, 0.01), 0.3 - 0.05 - math.hypot(0.02, 0.01))
    assert impact.inverted_u_margin(m, se, 2) == pytest.approx(expected)
    assert impact.inverted_u_margin(m, se, 0) < 0


def test_signal_is_zero_when_every_group_has_equal_rewards():
    """An untrained model never solves 2-digit addition: all advantages vanish, so S = 0."""
    from vgh_lib.models import tiny_gpt2
    from vgh_lib.tasks import Task, build_tokenizer

    tok = build_tokenizer()
    model = tiny_gpt2(tok, 1, 16, 2, 16, seed=0)
    train, _ = Task("addition", 2, n_eval=10).split()
    assert impact.signal(model, tok, train, 4, 4, 1.0, seed=0) == 0.0


def test_grpo_update_matches_the_gradient_of_the_surrogate_by_hand():
    from vgh_lib import grpo
    from vgh_lib.models import tiny_gpt2
    from vgh_lib.tasks import Task, build_tokenizer

    tok = build_tokenizer()
    model = tiny_gpt2(tok, 1, 16, 2, 16, seed=1)
    train, _ = Task("reverse", 1, n_eval=2).split()
    g = impact.grpo_update(model, tok, train[:3], 4, 2.0, torch.Generator().manual_seed(0))
    # by hand: same noise, same samples
    gen = torch.Generator().manual_seed(0)
    prompts, answers = grpo.encode_prompts(tok, train[:3], "cpu")
    prompts, answers = prompts.repeat_interleave(4, 0), answers.repeat_interleave(4, 0)
    noise = grpo.gumbel_noise((12, 1, len(tok)), gen)
    comp = grpo.generate(model, prompts, 1, 2.0, noise)
    adv = grpo.group_advantages((comp == answers).all(1).float(), 4)
    loss = (adv[:, None] * grpo.completion_logprobs(model, prompts, comp, 2.0)).sum(1).mean()
    model.zero_grad()
    loss.backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(g, expected)
