"""Value impact: factors, the U-statistic signal, the pre-registered rules and the inference
(nested bootstrap coverage, permutation calibration)."""

import math

import numpy as np
import pytest
import scipy.stats
import torch

from vgh_lib.common import impact, stats
from vgh_lib.experiments import value_impact
from vgh_lib.tiny import grpo, sampling


def test_headroom_on_hand_made_tables():
    # 4 samples per prompt; k = 2
    # prompt 1: 0 successes -> pass@1 0, pass@2 0; prompt 2: all -> 1, 1;
    # prompt 3: 1 of 4 -> pass@1 1/4, pass@2 = 1 − C(3,2)/C(4,2) = 1/2
    assert impact.headroom([0, 4, 1], 4, 2) == pytest.approx((0 + 0 + 0.25) / 3)
    assert impact.headroom([0, 0], 8, 4) == 0.0  # never succeeds: no headroom
    assert impact.headroom([8, 8], 8, 4) == 0.0  # always succeeds: none left
    assert impact.mean_passk([0, 4, 1], 4, 2) == pytest.approx((0 + 1 + 0.5) / 3)


def test_reward_std_signal():
    assert impact.reward_std_signal([0, 4, 2], 4) == pytest.approx((0 + 0 + 0.5) / 3)
    assert impact.reward_std_signal([1], 4) == pytest.approx(math.sqrt(3) / 4)  # p = 1/4


def test_u_statistic_is_unbiased_for_the_squared_norm():
    """M noisy unbiased estimates of g: the U-statistic averages to ‖g‖², the mean squared norm
    is biased by tr Var; the jackknife SE is conservative (Efron–Stein) but of the right size."""
    rng = np.random.default_rng(0)
    g = np.array([0.3, -0.4, 0.0, 0.1, 0.2])
    true = float(g @ g)
    M, reps = 6, 4000
    u, naive, se = [], [], []
    for _ in range(reps):
        est = g + rng.normal(size=(M, g.size))
        gram = est @ est.T
        u.append(stats.u_statistic_sq_norm(gram))
        naive.append(np.mean(np.diag(gram)))
        se.append(stats.u_statistic_se(gram))
    u = np.array(u)
    assert abs(u.mean() - true) < 4 * u.std() / math.sqrt(reps)
    assert np.mean(naive) - true > 4.5  # biased by tr Var = 5
    assert u.std() <= np.mean(se) <= 1.4 * u.std()


def test_u_statistic_pairs_only_distinct_estimates():
    rng = np.random.default_rng(1)
    est = rng.normal(size=(4, 3))
    gram = est @ est.T
    members = np.array([0, 0, 2, 3])
    pairs = [est[a] @ est[b] for i, a in enumerate(members) for j, b in enumerate(members)
             if i != j and a != b]
    assert stats.u_statistic_sq_norm(gram, members) == pytest.approx(np.mean(pairs))
    assert math.isnan(stats.u_statistic_sq_norm(gram, [1, 1, 1]))
    s, s_se = stats.norm_from_sq(4.0, 0.4)
    assert (s, s_se) == (2.0, pytest.approx(0.1))
    assert stats.norm_from_sq(-1.0, 0.4)[0] == 0.0


def test_spearman_rows_against_scipy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=11)
    y = rng.normal(size=(5, 11))
    y[0, 3] = y[0, 4]  # a tie
    expected = [scipy.stats.spearmanr(x, row).statistic for row in y]
    np.testing.assert_allclose(stats.spearman_rows(x, y), expected, atol=1e-12)
    assert np.isnan(stats.spearman_rows(x, np.ones((1, 11)))[0])


def test_permutation_pvalue_is_calibrated_under_the_null():
    """Independent x and y at 10 points, two groups: P(p ≤ α) ≈ α."""
    rng = np.random.default_rng(3)
    ps = np.array([stats.permutation_pvalue([rng.normal(size=10) for _ in range(2)],
                                            [rng.normal(size=10) for _ in range(2)],
                                            n_perm=400, seed=i)[1] for i in range(600)])
    for alpha in (0.05, 0.2, 0.5):
        rate = np.mean(ps <= alpha)
        assert abs(rate - alpha) < 3.5 * math.sqrt(alpha * (1 - alpha) / ps.size) + 0.01, (alpha, rate)
    # undefined when a group is constant: no p-value, never a small one
    t, p = stats.permutation_pvalue([np.zeros(6), np.arange(6.0)], [np.arange(6.0)] * 2, n_perm=99)
    assert np.isnan(t) and np.isnan(p)
    # and it has power: a perfect monotone relation in both groups
    t, p = stats.permutation_pvalue([np.arange(10.0)] * 2, [np.arange(10.0) ** 2] * 2, n_perm=2000)
    assert t == pytest.approx(1.0) and p < 0.001


def test_permutation_pvalue_by_exhaustive_enumeration():
    """At 5 points the null has 120 permutations; the Monte Carlo p approaches the exact one."""
    import itertools

    x, y = np.array([1.0, 2, 3, 4, 5]), np.array([2.0, 1, 4, 3, 5])
    obs = stats.spearman(x, y)
    exact = np.mean([stats.spearman(x, y[list(p)]) >= obs - 1e-12
                     for p in itertools.permutations(range(5))])
    _, p = stats.permutation_pvalue([x], [y], n_perm=20_000, seed=0)
    assert p == pytest.approx(exact, abs=0.01)


def _simulated_gains(rng, mean, n_seeds=4, n_prompts=200):
    """Seed effect, prompt effect and residual, as in a real GRPO run."""
    return (mean + rng.normal(0, 0.03, (n_seeds, 1)) + rng.normal(0, 0.05, (1, n_prompts))
            + rng.normal(0, 0.05, (n_seeds, n_prompts)))


def test_nested_bootstrap_covers_the_true_gain_at_the_real_design():
    """10 checkpoints, 4 GRPO seeds, 200 prompts: the 95 % intervals cover the true mean gain
    about 95 % of the time; without the small-sample scale they under-cover."""
    rng = np.random.default_rng(4)
    mu = np.linspace(0.0, 0.12, 10)
    hits = {True: 0, False: 0}
    n = 0
    for _ in range(100):
        for m in mu:
            g = _simulated_gains(rng, m)
            for scale in (True, False):
                lo, hi = impact.percentile_ci(impact.bootstrap_gain(g, 800, rng, scale))
                hits[scale] += lo <= m <= hi
            n += 1
    assert 0.93 <= hits[True] / n <= 0.985, hits[True] / n
    assert hits[False] / n < 0.9  # the plain percentile bootstrap over 4 seeds is too narrow


def test_bootstrap_predictors_against_a_naive_replicate():
    rng = np.random.default_rng(5)
    est = rng.normal(size=(5, 7)) + 1.0
    cp = impact.CheckpointData(100, est @ est.T, rng.integers(0, 9, 12), 8, 4,
                               rng.normal(size=(3, 12)))
    out = impact.bootstrap_predictors(cp, 3, np.random.default_rng(9))
    draw = np.random.default_rng(9)
    bi = draw.integers(0, 5, (3, 5))
    pi = draw.integers(0, 12, (3, 12))
    for b in range(3):
        c = cp.successes[pi[b]]
        s = math.sqrt(max(0.0, stats.u_statistic_sq_norm(cp.gram, bi[b])))
        h = impact.headroom(c, 8, 4)
        assert out["S"][b] == pytest.approx(s)
        assert out["H"][b] == pytest.approx(h)
        assert out["I"][b] == pytest.approx(s * h)
        assert out["reward std"][b] == pytest.approx(impact.reward_std_signal(c, 8))
    full = cp.predictors()
    assert full["S"] == pytest.approx(math.sqrt(stats.u_statistic_sq_norm(cp.gram)))


def test_exact_values_give_the_expected_factors_of_sampled_counts():
    """With exact success probabilities v, pass@1, pass@k, H and reward-std of from_values
    equal the binomial expectation of the sampled-count factors (pass@k = 1 − (1 − v)^k is
    the expectation of the unbiased estimator, by exact enumeration over the counts)."""
    from scipy.stats import binom

    v = np.array([0.05, 0.3, 0.5, 0.97])
    n, k = 12, 4
    cp = impact.CheckpointData.from_values(3, np.eye(2), v, k, np.zeros((2, 5)))
    expected_passk = [sum(binom.pmf(c, n, p) * impact.mean_passk([c], n, k) for c in range(n + 1))
                      for p in v]
    pred = cp.predictors()
    assert pred["pass@1"] == pytest.approx(v.mean())
    assert pred["H"] == pytest.approx(np.mean(expected_passk) - v.mean(), rel=1e-9)
    assert pred["reward std"] == pytest.approx(np.mean(np.sqrt(v * (1 - v))))
    assert pred["S"] == pytest.approx(0.0)   # orthogonal batches: ‖E ĝ‖² estimated as 0
    boot = impact.bootstrap_predictors(cp, 4, np.random.default_rng(0))
    assert np.all(boot["H"] > 0)
    with pytest.raises(ValueError, match="probabilities"):
        impact.CheckpointData.from_values(3, np.eye(2), [1.5], k, np.zeros((2, 1)))


def test_analyse_finds_a_planted_relation_and_not_a_planted_null():
    rng = np.random.default_rng(6)

    def trajectory(relation):
        cps = []
        for k in range(10):
            scale = 1.0 + k  # I grows with k through S
            est = scale * np.ones((6, 4)) + rng.normal(0, 0.1, (6, 4))
            succ = rng.integers(1, 8, 50)
            mean = 0.01 * k if relation else rng.normal(0, 0.001)
            cps.append(impact.CheckpointData(k, est @ est.T, succ, 8, 4,
                                             _simulated_gains(rng, mean, 4, 50) * 0.1))
        return cps

    good = impact.analyse([trajectory(True), trajectory(True)], "adamw", 300, 500)
    assert good.pooled["I"] > 0.8 and good.p_value < 0.01
    assert good.pooled_ci["I"][0] <= good.pooled["I"] + 1e-9
    null = impact.analyse([trajectory(False), trajectory(False)], "adamw", 300, 500)
    assert null.p_value > 0.01


# ------------------------------------------------------------------- pre-registered rules
def test_choose_lr_takes_the_largest_safe_rate():
    drops = {1e-3: [0.0, 0.2], 3e-4: [0.01, 0.05], 1e-4: [0.0, 0.0]}
    assert impact.choose_lr(drops, 0.05) == 3e-4  # 0.05 is not *more* than 0.05
    assert impact.choose_lr(drops, 0.2) == 1e-3
    assert impact.choose_lr({1e-3: [0.3], 1e-4: [0.1]}, 0.05) == 1e-4  # none safe: the smallest
    with pytest.raises(ValueError):
        impact.choose_lr({}, 0.05)


def test_crossing_and_grid():
    steps = [0, 9, 99, 999]
    passk = [0.0, 0.05, 0.5, 1.0]
    # log(step+1): 0, log 10, log 100, log 1000; 0.1 is 1/9 of the way from 0.05 to 0.5
    assert value_impact.crossing_step(steps, passk, 0.1) == pytest.approx(10 ** (1 + 1 / 9) - 1)
    assert value_impact.crossing_step(steps, passk, 0.5) == pytest.approx(99)
    with pytest.raises(ValueError, match="never crosses"):
        value_impact.crossing_step(steps, passk, 1.5)
    grid = value_impact.learning_region_grid(steps, passk, 3000, size=3, passk_range=(0.05, 0.5))
    assert grid == (9, 30, 99, 3000)


def test_pilot_checkpoints_and_budget():
    targets = value_impact.PILOT["pass1_targets"]
    assert targets == (0.25, 0.5, 0.9)
    assert impact.pilot_checkpoints([0.0, 0.1, 0.3, 0.52, 0.8, 0.95], targets) == [2, 3, 5]
    assert impact.pilot_checkpoints([0.5, 0.5, 0.5], targets) == [0, 1, 2]  # distinct
    assert value_impact.steps_for_budget(0.05, 160) == 60   # 0.05·60·160/2 = 240 s ≤ 300
    assert value_impact.steps_for_budget(0.08, 160) == 40   # 384 s > 300; 256 s fits
    assert value_impact.steps_for_budget(1.0, 160) == 30    # nothing fits: the smallest


def test_small_sample_scale():
    # t_3(0.975) = 3.18245, z(0.975) = 1.95996: 3.18245 / 1.95996 · sqrt(4/3) = 1.87491
    assert impact.small_sample_scale(4) == pytest.approx(1.87491, abs=1e-5)
    assert impact.small_sample_scale(10_000) == pytest.approx(1.0, abs=1e-3)


# ------------------------------------------------------------------- on a real model
def test_grpo_update_matches_the_gradient_of_the_surrogate_by_hand():
    from vgh_lib.tiny import grpo
    from vgh_lib.tiny.models import tiny_gpt2
    from vgh_lib.tiny.tasks import Task, build_tokenizer

    tok = build_tokenizer()
    model = tiny_gpt2(tok, 1, 16, 2, 16, seed=1)
    train, _ = Task("reverse", 1, n_eval=2).split()
    g = grpo.grpo_update(model, tok, train[:3], 4, 2.0, torch.Generator().manual_seed(0))
    # by hand: same noise, same samples
    gen = torch.Generator().manual_seed(0)
    prompts, answers = sampling.encode_prompts(tok, train[:3], "cpu")
    prompts, answers = prompts.repeat_interleave(4, 0), answers.repeat_interleave(4, 0)
    noise = sampling.gumbel_noise((12, 1, len(tok)), gen)
    comp = sampling.generate(model, prompts, 1, 2.0, noise)
    adv = grpo.group_advantages((comp == answers).all(1).float(), 4)
    loss = (adv[:, None] * sampling.completion_logprobs(model, prompts, comp, 2.0)).sum(1).mean()
    model.zero_grad()
    loss.backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(g, expected.double())  # returned in float64


def test_signal_gram_holds_the_inner_products_of_independent_batches():
    """Entry (a, b) is ⟨ĝ_a, ĝ_b⟩ of the batches drawn in order from one generator."""
    from vgh_lib.tiny.models import tiny_gpt2
    from vgh_lib.tiny.tasks import Task, build_tokenizer

    tok = build_tokenizer()
    model = tiny_gpt2(tok, 1, 16, 2, 16, seed=2)
    train, _ = Task("reverse", 2, n_eval=10).split()
    gram = grpo.signal_gram(model, tok, train, 3, 5, 4, 2.0, seed=7)
    gen = torch.Generator().manual_seed(7)
    idx = torch.randperm(len(train), generator=gen)[:15].tolist()
    g = [grpo.grpo_update(model, tok, [train[i] for i in idx[5 * b:5 * b + 5]], 4, 2.0, gen).double()
         for b in range(3)]
    for a in range(3):
        for b in range(3):
            assert gram[a, b] == pytest.approx(float(g[a] @ g[b]), rel=1e-9, abs=1e-12)
    assert np.any(gram != 0)  # the batches carried signal (some groups had unequal rewards)
    with pytest.raises(ValueError, match="at least 2 batches"):
        grpo.signal_gram(model, tok, train, 1, 5, 4, 2.0, seed=0)
    with pytest.raises(ValueError, match="need more than"):
        grpo.signal_gram(model, tok, train, 100, 5, 4, 2.0, seed=0)


def test_ranking_sentence_chooses_each_verb_by_the_paired_interval():
    from vgh_lib.experiments import value_impact as vi

    text = vi.ranking_sentence("adamw", 0.71, {"S": (0.04, -0.02, 0.12), "H": (0.25, 0.10, 0.39),
                                               "reward std": (-0.30, -0.41, -0.05)})
    assert "pooled Spearman 0.71: better than H, no better than S, and worse than reward std" in text
    assert "H +0.25 [+0.10, +0.39]" in text
    assert "does not rank" in vi.ranking_sentence("sgd", float("nan"), {"S": (0.0, 0.0, 0.0)})


def test_caveats_sentence_counts_collapses_and_names_failed_claims():
    from vgh_lib.experiments import value_impact as vi

    text = vi.caveats_sentence({"sgd": ["a", "b", "c"]}, {"adamw": 0, "sgd": 15},
                               {"adamw": 80, "sgd": 80})
    assert text == ("Under AdamW, none of its 80 runs collapsed and no claim failed; under SGD, "
                    "15 of its 80 runs collapsed and claims a, b and c failed.")


# ---------------------------------------- ranking, and per-task gains pooled over seeds (10, 12)
def test_pooled_gains_against_a_direct_computation():
    """The seed part pools the per-seed means' deviations over tasks (df = Σ(seeds − 1)); the
    prompt part is the variance of per-prompt means over n; the interval uses the
    Welch–Satterthwaite degrees of freedom of the two."""
    from scipy.stats import t as student_t

    rng = np.random.default_rng(0)
    mats = {"a": rng.normal(0.1, 0.2, (2, 30)), "b": rng.normal(-0.05, 0.1, (3, 12))}
    gains, df = impact.pooled_gains(mats)
    assert df == 1 + 2
    ss = sum(((m.mean(1) - m.mean()) ** 2).sum() for m in mats.values())
    for g, (name, m) in zip(gains, mats.items()):
        v1 = ss / 3 / m.shape[0]
        v2 = np.var(m.mean(0), ddof=1) / m.shape[1]
        dof = (v1 + v2) ** 2 / (v1 ** 2 / 3 + v2 ** 2 / (m.shape[1] - 1))
        assert g.task == name and g.mean == pytest.approx(m.mean())
        assert g.se == pytest.approx(np.sqrt(v1 + v2))
        assert g.hi - g.mean == pytest.approx(student_t.ppf(0.975, dof) * g.se)


def test_the_interval_covers_at_its_nominal_rate_when_seeds_or_prompts_dominate():
    for seed_sd, prompt_sd in ((0.05, 0.01), (0.0, 0.1), (0.03, 0.1)):
        cov = impact.gain_interval_coverage([seed_sd] * 24, [prompt_sd] * 24, 2, [32] * 24, 150, seed=1)
        assert 0.93 <= cov <= 0.97  # 3,600 intervals: binomial SE 0.004 at 0.95


def test_paired_difference_scores_i_by_sign_and_the_other_predictor_by_size():
    y = np.arange(10.0)
    d, lo, hi = impact.rank_lead(y, -y, y, n_boot=200, seed=0)
    assert d == pytest.approx(0.0) and lo == pytest.approx(0.0) and hi == pytest.approx(0.0)
    d, lo, hi = impact.rank_lead(-y, y, y, n_boot=200, seed=0)
    assert d == pytest.approx(-2.0) and hi == pytest.approx(-2.0)


def test_correlation_permutation_p_is_small_for_a_monotone_relation_and_not_for_a_reversed_one():
    x = np.arange(12.0)
    up = impact.rank_correlation(x, x ** 2, n_boot=200, n_perm=2000, seed=0)
    down = impact.rank_correlation(x, -x, n_boot=200, n_perm=2000, seed=0)
    assert up.value == pytest.approx(1.0) and up.p < 0.001 and down.p > 0.99


def _analysis(n_points=3, trajectories=2):
    names = ("I", "S", "H")
    pooled = {"I": 0.61, "S": 0.25, "H": -0.1}
    return impact.Analysis(
        "adamw", [np.arange(n_points)] * trajectories, [np.linspace(0.1, 0.3, n_points)] * trajectories,
        [np.tile([[-0.05, 0.5]], (n_points, 1))] * trajectories,
        [{n: np.arange(n_points) + k for k, n in enumerate((*names, "pass@1", "reward std"))}] * trajectories,
        {n: np.array([pooled[n] - 0.01, pooled[n] + 0.01][:trajectories]) for n in names},
        {n: [(-1.0, 1.0)] * trajectories for n in names}, pooled,
        {n: (pooled[n] - 0.2, pooled[n] + 0.2) for n in names},
        {"S": (0.36, 0.05, 0.7), "H": (0.71, -0.02, 1.3)}, 0.01)


def test_predictor_table_has_i_first_and_the_paired_differences():
    header, rows = impact.predictor_table(_analysis())
    assert header == ["predictor", "pooled Spearman [95% CI]", "per trajectory", "Spearman(I) − this [95% CI]"]
    assert [r[0] for r in rows] == ["I", "S", "H"]
    assert rows[0][1] == "0.61 [0.41, 0.81]" and rows[0][2] == "0.60, 0.62" and rows[0][3] == ""
    assert rows[1][3] == "+0.36 [+0.05, +0.70]" and rows[2][3] == "+0.71 [-0.02, +1.30]"
    header, rows = impact.predictor_table(_analysis(trajectories=1), per_trajectory=False)
    assert header[1] == "Spearman with the gain [95% CI]" and all(len(r) == 3 for r in rows)
