"""The Theorem 2 statistics: summaries on hand-made cells, the cross-fitted agreement on a real
(tiny) model, the bound fit against brute force, the one-group fidelity against a naive loop,
and the identity and ablation as tests."""

import math

import numpy as np
import pytest
import torch

from vgh_lib.common import stats
from vgh_lib.experiments import transformer_costates
from vgh_lib.experiments.transformer_costates import Cell
from vgh_lib.tiny import costates as cs
from vgh_lib.tiny import sampling
from vgh_lib.tiny.models import tiny_gpt2
from vgh_lib.tiny.tasks import Task, build_tokenizer


def _cell(step, tau, tau_r, rho, gap, ent, se=0.01):
    return Cell(step=step, pass1=0.5, tau=tau, tau_r=tau_r, cosine=rho, cosine_ci=(rho, rho),
                rel_error=math.sqrt(2 * max(0.0, 1 - rho)), resolution_d=0.95, resolution_c=0.95,
                gap=gap, mean_gap=gap, entropy=ent, reward=0.5, agreement=rho, agreement_se=se)


@pytest.fixture(scope="module")
def setup():
    """A tiny random GPT-2 with weights scaled up (a peaked policy), and its greedy answers as
    the exact-match targets: values about 0.07 and 0.2 at τ = 1, so rewards vary."""
    tok = build_tokenizer()
    model = tiny_gpt2(tok, 2, 32, 4, 16, seed=0).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(20)
    _, held = Task("addition", 1, n_eval=10).split()
    prompts, answers = sampling.encode_prompts(tok, held[:2], "cpu")
    answers = sampling.generate(model, prompts, answers.shape[1], 0.0)
    return model, prompts, answers


def test_low_gap_agreement_and_resolution_on_hand_made_cells():
    cells = [_cell(10, 0.5, 0.1, 0.99, 0.1, 1.0), _cell(10, 1.0, 0.1, 0.95, 0.2, 2.0),
             _cell(10, 2.0, 0.1, 0.80, 0.4, 3.0), _cell(20, 0.5, 0.1, 0.60, 0.1, 1.0),
             _cell(20, 1.0, 0.1, 0.90, 0.3, 2.0), _cell(20, 4.0, 0.1, 0.10, 0.05, 4.0, se=0.2)]
    assert [c.resolved(0.05) for c in cells] == [True] * 5 + [False]
    assert cells[0].error == pytest.approx(0.01)
    # lowest gap quartile of the resolved cells: gaps 0.1, 0.1 (quantile 0.1); the unresolved
    # cell with the lowest gap of all must not enter
    assert transformer_costates.low_gap_agreement(cells, 0.05) == pytest.approx((0.99 + 0.60) / 2)
    assert math.isnan(transformer_costates.low_gap_agreement(cells[-1:], 0.05))
    nan_se = _cell(1, 1.0, 0.1, 0.9, 0.1, 1.0, se=float("nan"))
    assert not nan_se.resolved(0.05)


def test_fit_bound_is_the_quantile_regression_optimum():
    """The LP solution against a brute-force grid of (C1, C2) on the pinball loss."""
    rng = np.random.default_rng(0)
    gap, ent = rng.uniform(0, 1, 40), rng.uniform(0, 3, 40)
    err = 0.3 * gap + 0.05 * ent + rng.normal(0, 0.05, 40)
    q = 0.9
    c1, c2 = transformer_costates.fit_bound(gap, ent, err, q)

    def pinball(a, b):
        r = err - a * gap - b * ent
        return np.sum(np.where(r > 0, q * r, (q - 1) * r))

    grid = [(a, b) for a in np.linspace(0, 1, 201) for b in np.linspace(0, 0.3, 121)]
    best = min(pinball(a, b) for a, b in grid)
    assert pinball(c1, c2) <= best + 1e-9
    assert c1 >= 0 and c2 >= 0
    # about a share q of the points lie under the bound
    assert np.mean(err <= c1 * gap + c2 * ent + 1e-12) == pytest.approx(q, abs=0.08)


def test_bound_test_by_hand():
    """Fit checkpoints obey error = 0.5·gap exactly; held-out ones are a mix."""
    fit = [_cell(0, t, 0.1, 1 - 0.5 * g, g, 1.0) for t, g in ((0.5, 0.1), (1.0, 0.2), (2.0, 0.4))]
    test = [_cell(1, 0.5, 0.1, 1 - 0.04, 0.1, 1.0),    # error 0.04, bound 0.05: covered
            _cell(1, 1.0, 0.1, 1 - 0.30, 0.2, 1.0),    # error 0.30, bound 0.10: not covered
            _cell(1, 2.0, 0.1, 1 - 0.05, 0.4, 1.0)]    # error 0.05, bound 0.20: ratio 4
    bt = transformer_costates.bound_test(fit + test, [0], 0.05, quantile=0.9)
    assert bt.c1 == pytest.approx(0.5, abs=1e-9) and bt.c2 == pytest.approx(0.0, abs=1e-9)
    assert bt.n_fit == 3 and bt.n_test == 3 and bt.test_steps == [1]
    assert bt.coverage == pytest.approx(2 / 3)
    assert bt.median_ratio == pytest.approx(1.25)  # ratios 1.25, 1/3, 4: median 1.25
    assert bt.n_ratio == 3 and bt.clear_coverage == pytest.approx(2 / 3)  # all > 2 SE = 0.02
    # least squares of the same terms on the fit cells is 0.5·gap; R² on the held-out cells
    e = np.array([0.04, 0.30, 0.05])
    pred = 0.5 * np.array([0.1, 0.2, 0.4])
    r2 = 1 - np.sum((e - pred) ** 2) / np.sum((e - e.mean()) ** 2)
    assert bt.r2_oos == pytest.approx(r2, rel=1e-6)


def test_vectorised_bootstrap_equals_a_naive_loop():
    """Same resample indices (same generator seed): the same interval as a loop of gathers."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(800, 3, 8, dtype=torch.float64, generator=g)
    b = a + 1.5 * torch.randn(800, 3, 8, dtype=torch.float64, generator=g)
    lo, hi = transformer_costates._bootstrap_cosine(a, b, 200, 60, torch.Generator().manual_seed(1))
    idx = torch.randint(200, (60, 4, 200), generator=torch.Generator().manual_seed(1))
    A, B = a.view(4, 200, -1), b.view(4, 200, -1)
    cos = []
    for r in range(60):
        ma = torch.stack([A[p, idx[r, p]].mean(0) for p in range(4)]).reshape(-1)
        mb = torch.stack([B[p, idx[r, p]].mean(0) for p in range(4)]).reshape(-1)
        cos.append(stats.cosine(ma, mb))
    nlo, nhi = np.quantile(cos, [0.025, 0.975])
    assert lo == pytest.approx(nlo, abs=1e-12) and hi == pytest.approx(nhi, abs=1e-12)
    # (no `lo ≤ full ≤ hi`: the bootstrap cosine is biased low, so the full-sample cosine can
    # lie above a percentile interval; that assertion could not detect a bug either way)


def test_fold_means_are_per_prompt_fold_means():
    x = torch.arange(2 * 6 * 3, dtype=torch.float64).view(12, 3)  # P=2 prompts, n=6, d=3
    f = transformer_costates._fold_means(x, 2, 3)  # 3 folds of 2 rollouts
    for j in range(3):
        expect = torch.cat([x[p * 6 + 2 * j: p * 6 + 2 * j + 2].mean(0) for p in range(2)])
        torch.testing.assert_close(f[j], expect)


def test_measure_cells_independent_noise_and_determinism(setup):
    model, prompts, answers = setup
    a = transformer_costates.measure_cells(model, prompts, answers, 64, [1.0, 2.0], [0.3, 1.0], seed=3, step=5)
    b = transformer_costates.measure_cells(model, prompts, answers, 64, [1.0, 2.0], [0.3, 1.0], seed=3, step=5)
    assert [(c.tau, c.tau_r) for c in a] == [(1.0, 0.3), (1.0, 1.0), (2.0, 0.3), (2.0, 1.0)]
    for x, y in zip(a, b):
        assert (x.agreement == y.agreement or (math.isnan(x.agreement) and math.isnan(y.agreement)))
        assert x.gap == y.gap or (math.isnan(x.gap) and math.isnan(y.gap))
    # every cell draws its own discrete rollouts: the entropies of two τ_r cells at one τ differ
    assert a[0].entropy != a[1].entropy
    with pytest.raises(ValueError, match="at least 4"):
        transformer_costates.measure_cells(model, prompts, answers, 3, [1.0], [0.3], seed=0)


def test_crossfit_agreement_is_unbiased_where_raw_cosine_is_attenuated(setup):
    """Two processes with the same expectation: on a real model, λ^D against λ^D from
    independent draws, 8 replicates. ρ averages to 1 (up to its small upward ratio bias, of
    order 1/N: 0.005 allowed); the raw cosine is clearly lower."""
    model, prompts, answers = setup
    Lp = prompts.shape[1]
    rhos, raws = [], []
    for rep in range(8):
        folds = []
        for s in (2 * rep, 2 * rep + 1):
            d = cs.discrete_rollouts(model, prompts, answers, 640, 1.0,
                                     torch.Generator().manual_seed(100 + s), layers=False,
                                     group_size=80)
            folds.append(transformer_costates._fold_means(d.costates["embed"][:, :Lp], 2, 8))
        rhos.append(stats.crossfit_cosine(folds[0], folds[1])[0])
        raws.append(stats.cosine(folds[0].mean(0), folds[1].mean(0)))
    rhos, raws = np.array(rhos), np.array(raws)
    assert abs(rhos.mean() - 1) <= 3 * rhos.std(ddof=1) / np.sqrt(8) + 0.005
    diff = rhos - raws
    assert diff.mean() > 3 * diff.std(ddof=1) / np.sqrt(8)  # attenuation, removed by ρ


def test_batch_fidelity_against_a_naive_loop(setup):
    model, prompts, answers = setup
    f = transformer_costates.batch_fidelity(model, prompts, answers, 256, 1.5, seed=1, step=2, group_sizes=(4, 64))
    assert f.group_sizes == [4, 64]
    # the same rollouts (same seed derivation), recomputed group by group
    gen = torch.Generator().manual_seed(transformer_costates._seed(1, 2, 99, 1500, 2))
    d = cs.discrete_rollouts(model, prompts, answers, 256, 1.5, gen, advantage="one", layers=False)
    Lp = prompts.shape[1]
    s = d.costates["embed"][:, :Lp].reshape(2, 256, -1).double()
    R = d.rewards.view(2, 256).double()
    _, g = cs.exact_value_gradient(model, prompts[0], answers[0], 1.5)
    _, g1 = cs.exact_value_gradient(model, prompts[1], answers[1], 1.5)
    gs = [g.reshape(-1).double(), g1.reshape(-1).double()]
    for G, measured in zip((4, 64), f.measured):
        per_batch = []
        for b in range(256 // G):
            cos = []
            for p in range(2):
                idx = slice(b * G, (b + 1) * G)
                r = R[p, idx]
                adv = r - (r.sum() - r) / (G - 1)
                lam = (adv[:, None] * s[p, idx]).mean(0)
                cos.append(0.0 if lam.norm() == 0 else stats.cosine(lam, gs[p]))
            per_batch.append(np.mean(cos))
        assert measured == pytest.approx(np.mean(per_batch), abs=1e-4)
    assert all(0 <= p <= 1 for p in f.predicted) and f.predicted[0] < f.predicted[1]


def test_identity_z_detects_a_wrong_advantage(setup):
    """z ≤ 3 for the unbiased estimator; a plausible bug (GRPO's per-prompt normalisation in
    place of leave-one-out, which rescales each prompt's block) is detected at this N."""
    model, prompts, answers = setup
    ok = transformer_costates.identity_check(model, prompts, answers, 3000, 1.0, seed=0)
    assert ok.z <= 3
    P, Lp = prompts.shape
    d = cs.discrete_rollouts(model, prompts, answers, 3000, 1.0, torch.Generator().manual_seed(0),
                             advantage="grpo", layers=False)
    lam = d.costates["embed"][:, :Lp].reshape(P, 3000, -1).double()
    _, g = cs.teacher_forced_value_gradient(model, prompts, answers, 1.0)
    z = stats.norm_z(lam.mean(1) - g.reshape(P, -1), lam.std(1) / np.sqrt(3000))
    assert z > 3


def test_attention_ablation_zeroes_earlier_prompt_costates(setup):
    """The cut-path zero, a property of the construction: a unit test, not a finding."""
    model, prompts, answers = setup
    cut, uncut = transformer_costates.ablation_check(model, prompts, answers, 16, 1.0, seed=0)
    assert cut == 0.0 and uncut > 1e-6


def test_attention_share_by_hand(setup):
    model, prompts, answers = setup
    share = transformer_costates.attention_share(model, prompts, answers, 1.0)
    _, g = cs.teacher_forced_value_gradient(model, prompts, answers, 1.0)
    _, gc = cs.teacher_forced_value_gradient(model, prompts, answers, 1.0, cut=True)
    Lp = prompts.shape[1]
    assert torch.all(gc[:, : Lp - 1] == 0)  # only the last prompt position has an own path
    for p in range(2):
        expect = ((g[p] - gc[p]) ** 2).sum() / (g[p] ** 2).sum()
        assert share[p] == pytest.approx(float(expect), rel=1e-6)
        assert 0 < share[p] < 1


def test_unresolved_reason_names_each_case():
    nan = float("nan")
    ok = _cell(10, 1.0, 0.3, 0.9, 0.1, 1.0, se=0.05)
    assert ok.unresolved_reason(0.05) is None and ok.resolved(0.05)
    assert "SE of ρ 0.060 > 0.05" == _cell(10, 1.0, 0.3, 0.9, 0.1, 1.0, se=0.06).unresolved_reason(0.05)
    zero = _cell(10, 1.0, 0.3, nan, nan, 1.0)
    zero.reward = 1.0
    assert "every reward in every group is equal" in zero.unresolved_reason()
    zero.reward = 0.4
    assert "pure noise" in zero.unresolved_reason() and not zero.resolved()
    noisy = _cell(10, 1.0, 0.3, 0.9, 0.1, 1.0)
    noisy.agreement = nan
    assert "not positive" in noisy.unresolved_reason()


def test_mid_checkpoint_is_the_first_to_reach_half_of_the_last():
    assert transformer_costates.mid_checkpoint([0.0, 0.1, 0.3, 0.35, 0.6]) == 2   # 0.3 ≥ 0.5 · 0.6
    assert transformer_costates.mid_checkpoint([0.0, 0.29, 0.31, 0.6]) == 2       # 0.29 just misses
    assert transformer_costates.mid_checkpoint([0.0, 0.0, 0.0, 0.0]) == 0          # 0 ≥ 0: the first
    assert transformer_costates.mid_checkpoint([0.2, 0.1, -1.0]) == 0


def test_share_summary_against_a_loop():
    shares = [np.array([0.9, 0.8, 0.7]), np.array([0.2, 0.4, 0.9]), np.array([0.6, 0.7, 0.8])]
    results = [transformer_costates.CheckpointResult(step, 0.5, [], [], s) for step, s in zip((0, 10, 30), shares)]
    out = transformer_costates.share_summary(results, seed=3, share_min=0.5)
    lo = [stats.bootstrap_mean_ci(s, seed=3)[0] for s in shares]
    np.testing.assert_allclose(out.lo, lo)
    np.testing.assert_allclose(out.mean, [0.8, 0.5, 0.7])
    assert out.min_lower == pytest.approx(min(lo))
    first = next(i for i in range(3) if all(v >= 0.5 for v in lo[i:]))
    assert out.majority_step == (0, 10, 30)[first]
    assert out.majority_min == pytest.approx(min([0.8, 0.5, 0.7][first:]))
    none = transformer_costates.share_summary(results, seed=3, share_min=0.99)
    assert math.isnan(none.majority_step) and math.isnan(none.majority_min)


def test_measure_cells_is_measure_cell_per_grid_point(setup):
    model, prompts, answers = setup
    cells = transformer_costates.measure_cells(model, prompts, answers, 64, [1.0, 2.0], [0.3], seed=4, step=7)
    for ti, tau in enumerate((1.0, 2.0)):
        one = transformer_costates.measure_cell(model, prompts, answers, tau, 0.3, 8, 8,
                                    transformer_costates._seed(4, 7, ti, 0, 0), transformer_costates._seed(4, 7, ti, 0, 1),
                                    step=7)
        assert repr(cells[ti]) == repr(one)  # every field, NaN included
    assert np.isfinite(cells[0].agreement)  # a resolved cell is among them


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_attention_share_on_cuda_equals_the_cpu(setup):
    """The share comes back to the host from a CUDA model (it once called .numpy() there)."""
    import copy

    model, prompts, answers = setup
    cpu = transformer_costates.attention_share(model, prompts, answers, 1.0)
    gpu = transformer_costates.attention_share(copy.deepcopy(model).cuda(), prompts.cuda(), answers.cuda(), 1.0)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4)


# ------------------------------------------------------- the successor specification (issue 21)
def _enumerate_group(probs, rewards, scores, G):
    """Exact E‖m‖², E⟨m, g⟩, P(all rewards equal) and E cos(m, g) (0 for m = 0) over every
    G-tuple of outcomes."""
    import itertools

    g = (probs[:, None] * rewards[:, None] * scores).sum(0)
    e_sq = e_in = p_eq = e_cos = 0.0
    for tup in itertools.product(range(len(probs)), repeat=G):
        w = float(np.prod(probs[list(tup)]))
        R = rewards[list(tup)]
        adv = R - (R.sum() - R) / (G - 1)
        m = (adv[:, None] * scores[list(tup)]).mean(0)
        e_sq += w * float(m @ m)
        e_in += w * float(m @ g)
        p_eq += w * float(np.all(R == R[0]))
        n = np.linalg.norm(m)
        e_cos += w * (float(m @ g) / (n * np.linalg.norm(g)) if n > 0 else 0.0)
    return g, e_sq, e_in, p_eq, e_cos


@pytest.mark.parametrize("G", [2, 3, 5])
def test_group_second_moment_equals_exact_enumeration(G):
    """Four outcomes with binary rewards and zero-mean scores: the closed form of E‖m‖² (with
    the G − 1 baseline and the cross-terms of shared rewards) equals enumeration of every group;
    a version with n − 1 in the baseline's variance, or without the cross-terms, does not."""
    rng = np.random.default_rng(G)
    probs = np.array([0.1, 0.3, 0.25, 0.35])
    rewards = np.array([1.0, 0.0, 1.0, 0.0])
    scores = rng.normal(0, 1, (4, 3))
    scores -= (probs[:, None] * scores).sum(0)          # E s = 0, as for a score function
    g, e_sq, e_in, p_eq, e_cos = _enumerate_group(probs, rewards, scores, G)
    p = float(probs @ rewards)
    a = float(probs @ (rewards * (scores ** 2).sum(1)))
    b = float(probs @ (scores ** 2).sum(1))
    assert e_in == pytest.approx(float(g @ g))          # E m = g
    assert transformer_costates.group_second_moment(float(g @ g), a, b, p, G) == pytest.approx(e_sq, rel=1e-10)
    assert p_eq == pytest.approx(p ** G + (1 - p) ** G)
    naive = a * (1 - 2 * p) + (p * p + p * (1 - p) / 999) * b
    assert naive / G + (1 - 1 / G) * float(g @ g) != pytest.approx(e_sq, rel=1e-3)
    pred = transformer_costates.predicted_group_cosine(float(g @ g), a, b, p, G)
    assert 0 < pred <= 1 and abs(pred - e_cos) < 0.25   # a ratio of expectations, not exact


def test_batch_fidelity_z_is_the_miss_in_units_of_its_own_error(setup):
    model, prompts, answers = setup
    f = transformer_costates.batch_fidelity(model, prompts, answers, 512, 1.0, seed=3, group_sizes=(4, 16))
    assert len(f.predicted_exact) == len(f.z) == 2
    for m, p_, se, z in zip(f.measured, f.predicted_exact, f.measured_se, f.z):
        assert z == pytest.approx((m - p_) / se)
    miss, n = transformer_costates.fidelity_misses([f], z_max=0.0)
    assert n == 2 and miss == sum(abs(z) > 0 for z in f.z)


def test_the_predicted_group_cosine_matches_a_tiny_model_at_large_n(setup):
    """On the tiny model, 4,096 rollouts per prompt: the exact-moment prediction is within
    4 standard errors of the measured one-group cosine at every G (it is what the claim
    judges); the first specification's prediction, which drops all-equal groups' zeros and
    uses the wrong baseline variance, misses by more at small G."""
    model, prompts, answers = setup
    f = transformer_costates.batch_fidelity(model, prompts, answers, 4096, 1.0, seed=5, group_sizes=(2, 4, 16))
    assert all(abs(z) < 4 for z in f.z), f.z
    old_z = (f.measured[0] - f.predicted[0]) / f.measured_se[0]
    assert abs(old_z) > 20     # at G = 2 most groups are all-equal: the old form ignored it


def test_clopper_pearson_against_published_values():
    lo, hi = transformer_costates.clopper_pearson(8, 10)
    assert lo == pytest.approx(0.4439, abs=1e-4) and hi == pytest.approx(0.9748, abs=1e-4)
    assert transformer_costates.clopper_pearson(0, 5)[0] == 0.0 and transformer_costates.clopper_pearson(5, 5)[1] == 1.0


def test_r_bound_test_fits_each_checkpoint_on_its_own_cells():
    """Two checkpoints whose errors follow different constants: each gets its own, fitted on the
    fitting temperatures only, and the test counts only clearly resolved cells."""
    cells = []
    for step, (c1, c2) in ((10, (1.0, 0.0)), (20, (0.0, 0.5))):
        for tau, gap, ent in ((0.25, 0.1, 1.0), (1.0, 0.3, 2.0), (0.5, 0.2, 1.5), (2.0, 0.4, 3.0)):
            c = _cell(step, tau, 0.3, 0.9, gap, ent)
            c.r, c.r_se = c1 * gap + c2 * ent, 0.01
            cells.append(c)
    cells[2].r = 0.5                      # step 10, τ = 0.5: above its bound (0.2)
    cells[3].r_se = 1.0                   # step 10, τ = 2: within 2 SE of 0, not counted
    bt = transformer_costates.r_bound_test(cells, fit_taus=(0.25, 1.0))
    assert bt.constants[10] == pytest.approx((1.0, 0.0), abs=1e-6)
    assert bt.constants[20] == pytest.approx((0.0, 0.5), abs=1e-6)
    assert len(bt.r) == 3 and bt.n_unclear == 1 and bt.covered == 2
    assert bt.coverage_ci == transformer_costates.clopper_pearson(2, 3)


def test_last_position_share_by_hand(setup):
    model, prompts, answers = setup
    whole, last = transformer_costates.attention_shares(model, prompts, answers, 1.0)
    _, g = cs.teacher_forced_value_gradient(model, prompts, answers, 1.0)
    _, gc = cs.teacher_forced_value_gradient(model, prompts, answers, 1.0, cut=True)
    for p in range(2):
        expect = ((g[p, -1] - gc[p, -1]) ** 2).sum() / (g[p, -1] ** 2).sum()
        assert last[p] == pytest.approx(float(expect), rel=1e-6) and 0 <= last[p] < whole[p]


def test_the_relaxation_bias_vanishes_as_tau_r_goes_to_zero(setup):
    """A known property of the Gumbel-softmax relaxation, so a unit test and not a claim: the
    relative error of the mean relaxed costate against the exact ∇V^D falls as τ_r falls (by
    more than its noise from τ_r = 1 to 0.3 and 0.1; from 0.3 to 0.1 the bias is already below
    the noise that small τ_r brings)."""
    model, prompts, answers = setup
    P, Lp = prompts.shape
    _, g = cs.teacher_forced_value_gradient(model, prompts, answers, 1.0)
    exact = g.reshape(1, -1).double().repeat(8, 1)
    errors = []
    for tau_r in (1.0, 0.3, 0.1):
        n = 4000
        ids = prompts.repeat_interleave(n, 0)
        V = cs.embedding_matrix(model).shape[0]
        noise = sampling.gumbel_noise((ids.shape[0], answers.shape[1], V),
                                      torch.Generator().manual_seed(7), ids.device)
        c = cs.relaxed_rollouts_from_noise(model, ids, answers, noise, 1.0, tau_r, layers=False)
        folds = transformer_costates._fold_means(c.costates["embed"], P, 8)
        errors.append(stats.crossfit_relative_error(exact, folds))
    (r1, se1), (r03, se03), (r01, se01) = errors
    assert r1 - r03 > 3 * np.hypot(se1, se03) and r1 - r01 > 3 * np.hypot(se1, se01), errors
    assert r01 <= r03 + 3 * np.hypot(se01, se03), errors   # no rise below τ_r = 0.3 beyond noise


def test_grid_and_fidelity_tables_show_every_cell_and_group_size():
    from vgh_lib.harness.glue import markdown_table

    def cell(agreement, se):
        return Cell(step=100, pass1=0.5, tau=1.0, tau_r=0.3, cosine=0.9, cosine_ci=(0.8, 0.95), rel_error=0.4,
                    resolution_d=0.9, resolution_c=0.9, gap=0.2, mean_gap=0.1, entropy=1.5, reward=0.5,
                    agreement=agreement, agreement_se=se, reliability_d=0.8, reliability_c=0.7)

    rows = transformer_costates.cell_rows([cell(0.97, 0.01), cell(0.9, 0.2)])
    assert len(rows[0]) == len(transformer_costates.CELL_HEADER)
    assert rows[0][4] == "0.970 ± 0.010" and [r[-1] for r in rows] == ["yes", "no"]   # SE above MAX_SE
    sizes = list(transformer_costates.GROUP_SIZES)
    f = transformer_costates.Fidelity(step=5, pass1=0.2, tau=0.5, value=0.25, group_sizes=sizes[:2],
                                      measured=[0.5, 0.7], measured_se=[0.01, 0.01], predicted=[0.5, 0.7],
                                      predicted_exact=[0.49, 0.72], z=[1.0, -2.0])
    (row,) = transformer_costates.fidelity_rows([f])
    assert row[:5] == ["5", "0.5", "0.250", "0.50 (0.49, z +1.0)", "0.70 (0.72, z -2.0)"]
    assert row[5:] == ["–"] * (len(sizes) - 2) and len(row) == len(transformer_costates.FIDELITY_HEADER)
    table = markdown_table(["a", "b"], [["1", "2"], ["3", "4"]])
    assert table == "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |"
