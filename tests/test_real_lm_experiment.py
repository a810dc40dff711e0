"""Notebook 06's experiment module (vgh_lib.experiments.real_lm): the critical values, the Monte
Carlo z, ``worst`` and the summaries that the claims use, on small synthetic inputs (no model
except a tiny random llama for the capitals probabilities)."""

import math
import warnings
from types import SimpleNamespace

import pytest
import torch
from scipy import stats as sps

from vgh_lib.experiments import real_lm
from vgh_lib.experiments.real_lm import RealLMParams
from vgh_lib.lm.costates import IdentityTest, PromptResult, Screened


# ----------------------------------------------------------------------------- helpers
def _ident(t=0.0, bias_z=0.0, cosine=0.99):
    return IdentityTest(cosine=cosine, t_parallel=t, bias_sq=0.0, bias_z=bias_z, rel_bias=0.01,
                        predicted_cosine=0.98, n_groups=8)


def _result(task="sums", value=0.5, success_rate=0.5, ident=None, share=0.7, fidelity=None,
            relaxed=None):
    return PromptResult(task=task, value=value, answer_len=2, prompt_len=10,
                        success_rate=success_rate, identity=ident or _ident(),
                        attention_share=share, fidelity=fidelity or {2: (0.1, 0.5), 4: (0.2, 0.1)},
                        relaxed=relaxed or [], n_distinct=3, seconds=0.0)


def _cell(tau, tau_r, rho, gap=0.0, raw=0.5, r=0.2):
    return {"tau": tau, "tau_r": tau_r, "rho": rho, "se": 0.01, "raw": raw, "r": r, "r_se": 0.02,
            "gap": gap, "entropy": 1.0, "reward": 0.2, "value": 0.4}


def _screened(task, value, first=0.5, answer_len=1):
    ex = SimpleNamespace(task=task, question=f"{task}:{value}", prompt="q", answer="a")
    return Screened(ex, torch.zeros(4, dtype=torch.long), torch.zeros(answer_len, dtype=torch.long),
                    value, first)


# ----------------------------------------------------------------- pre-registered constants
def test_the_pre_registered_thresholds_are_the_published_ones():
    assert (real_lm.ALPHA, real_lm.SPREAD, real_lm.RHO_HARD, real_lm.RHO_SPEARMAN, real_lm.SHARE,
            real_lm.FID_LARGEST) == (0.01, 0.3, 0.9, 0.5, 0.5, 0.9)
    assert real_lm.TASKS[0] == "capitals" and len(real_lm.TASKS) == 7


# ---------------------------------------------------------------------- critical values
def test_critical_values_match_tables_with_one_prompt():
    # one prompt: no Bonferroni correction; the textbook 1 % values
    assert real_lm.z_crit(1) == pytest.approx(2.3263478740, abs=1e-9)    # one-sided 1 %
    assert real_lm.z2_crit(1) == pytest.approx(2.5758293035, abs=1e-9)   # two-sided 1 %
    assert real_lm.t_crit(1, 11) == pytest.approx(3.1692726726, abs=1e-9)  # t_{0.995}, 10 df
    assert real_lm.t_crit(1, 31) == pytest.approx(2.7499956536, abs=1e-8)  # t_{0.995}, 30 df


@pytest.mark.parametrize("P,K", [(1, 4), (4, 32), (12, 512), (3, 17)])
def test_critical_values_are_bonferroni_over_the_prompts(P, K):
    a = real_lm.ALPHA
    assert real_lm.t_crit(P, K) == pytest.approx(float(sps.t.isf(a / P / 2, K - 1)), rel=1e-12)
    assert real_lm.z_crit(P) == pytest.approx(float(sps.norm.isf(a / P)), rel=1e-12)
    assert real_lm.z2_crit(P) == pytest.approx(float(sps.norm.isf(a / P / 2)), rel=1e-12)
    # the two-sided z is the one-sided z at half the level; alpha is used, not ignored
    assert real_lm.z2_crit(P) == pytest.approx(real_lm.z_crit(2 * P), rel=1e-12)
    assert real_lm.z_crit(P, alpha=0.05) < real_lm.z_crit(P)


def test_critical_values_grow_with_the_prompts_and_t_tends_to_z():
    assert real_lm.z_crit(1) < real_lm.z_crit(4) < real_lm.z_crit(12)
    assert real_lm.t_crit(4, 8) > real_lm.t_crit(4, 32) > real_lm.z2_crit(4)
    assert real_lm.t_crit(4, 100_000) == pytest.approx(real_lm.z2_crit(4), rel=1e-4)


def test_n_groups_is_rollouts_over_group_size():
    assert real_lm.n_groups(RealLMParams()) == 512 // 16 == 32
    assert real_lm.n_groups(RealLMParams(n_rollouts=100, group_size=8)) == 12


# -------------------------------------------------------------------------- Monte Carlo z
def test_mc_z_by_hand():
    # sd = sqrt(0.25 / 100) = 0.05
    assert real_lm.mc_z(0.6, 0.5, 100) == pytest.approx(2.0, rel=1e-12)
    assert real_lm.mc_z(0.4, 0.5, 100) == pytest.approx(-2.0, rel=1e-12)
    # sd = sqrt(0.2 * 0.8 / 400) = 0.02
    assert real_lm.mc_z(0.25, 0.2, 400) == pytest.approx(2.5, rel=1e-12)
    # V = 0: the variance is floored at 1e-12, so a single success is far off
    assert real_lm.mc_z(0.01, 0.0, 100) == pytest.approx(0.01 / math.sqrt(1e-14), rel=1e-12)
    assert real_lm.mc_z(0.3, 0.3, 64) == 0.0


def test_mc_zs_and_its_worst():
    results = [_result(value=0.5, success_rate=0.6), _result(value=0.5, success_rate=0.35)]
    zs = real_lm.mc_zs(results, 100)
    assert zs == pytest.approx([2.0, -3.0])
    assert real_lm.worst_abs_mc_z(zs) == pytest.approx(3.0)  # |z|: the negative one is worst


# ---------------------------------------------------------------------------------- worst
def test_worst_is_the_max_and_nan_fails():
    assert real_lm.worst([1.0, 3.0, 2.0]) == 3.0
    assert real_lm.worst([-4.0, -1.0]) == -1.0
    assert math.isnan(real_lm.worst([1.0, float("nan"), 5.0]))
    assert math.isnan(real_lm.worst_abs_mc_z([0.5, float("nan")]))


def test_worst_identity_statistics():
    results = [_result(ident=_ident(t=-3.5, bias_z=-6.0)), _result(ident=_ident(t=2.0, bias_z=1.5))]
    assert real_lm.worst_abs_t_parallel(results) == 3.5      # two-sided: |t|
    assert real_lm.worst_bias_z(results) == 1.5              # one-sided: signed z
    assert real_lm.min_cosine([_result(ident=_ident(cosine=0.9)),
                               _result(ident=_ident(cosine=0.7))]) == 0.7
    results.append(_result(ident=_ident(t=float("nan"), bias_z=float("nan"))))
    assert math.isnan(real_lm.worst_abs_t_parallel(results))
    assert math.isnan(real_lm.worst_bias_z(results))


def test_identity_table_has_a_row_per_prompt_with_signed_z():
    results = [_result(task="sums", value=0.5, success_rate=0.6, ident=_ident(t=-1.25, bias_z=0.5)),
               _result(task="max", value=0.5, success_rate=0.35)]
    table = real_lm.identity_table(results, real_lm.mc_zs(results, 100))
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| task | V^D |")
    assert lines[2].startswith("| sums | 0.500 | 0.600 (+2.00) | -1.25 | +0.50 |")
    assert "(-3.00)" in lines[3]


# ------------------------------------------------------------------------------- fidelity
def test_fidelity_summary_on_two_prompts():
    up = {8: (0.5, 0.0), 2: (0.1, 0.5), 16: (0.9, 0.0), 4: (0.3, 0.25)}     # insertion unsorted
    down = {2: (0.6, 0.3), 4: (0.4, 0.0), 8: (0.3, 0.0), 16: (0.2, 0.0)}
    fid = real_lm.fidelity_summary([_result(fidelity=up), _result(fidelity=down)])
    assert fid.group_sizes == [2, 4, 8, 16]
    assert fid.curves == [[0.1, 0.3, 0.5, 0.9], [0.6, 0.4, 0.3, 0.2]]
    assert fid.spearman == pytest.approx([1.0, -1.0])
    assert fid.spearman_mean == pytest.approx(0.0, abs=1e-12)
    assert fid.largest == pytest.approx((0.9 + 0.2) / 2)            # at G = 16, not G = 2
    assert fid.zero_share_smallest == pytest.approx((0.5 + 0.3) / 2)  # the second entry, at G = 2
    assert fid.g16 == pytest.approx(fid.largest)


def test_fidelity_summary_with_two_sizes_and_no_16():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of only NaN
        fid = real_lm.fidelity_summary([_result(fidelity={2: (0.1, 0.5), 8: (0.7, 0.0)})])
    assert fid.group_sizes == [2, 8]
    assert math.isnan(fid.spearman[0]) and math.isnan(fid.spearman_mean)
    assert math.isnan(fid.g16)
    assert fid.largest == pytest.approx(0.7)


# ------------------------------------------------------------------------------- relaxed
def test_relaxed_tau_is_one_or_the_middle_temperature():
    assert real_lm.relaxed_tau((0.5, 1.0, 2.0)) == 1.0
    assert real_lm.relaxed_tau((1.0,)) == 1.0
    assert real_lm.relaxed_tau((0.25, 0.5, 2.0)) == 0.5
    assert real_lm.relaxed_tau((0.3, 0.6, 2.0, 4.0)) == 2.0


def test_relaxed_summary_picks_the_hard_cell_and_the_gap_error_rank():
    # prompt 1: error 1 − ρ grows with the gap (Spearman +1); prompt 2: it shrinks (−1) but one
    # cell's ρ is NaN, leaving 3 cells; prompt 3: only 2 usable cells, left out
    p1 = [_cell(1.0, 0.1, 0.95, gap=0.01, raw=0.2), _cell(1.0, 1.0, 0.5, gap=0.5, raw=0.9),
          _cell(0.5, 0.1, 0.9, gap=0.1), _cell(0.5, 1.0, 0.8, gap=0.2)]
    p2 = [_cell(1.0, 0.1, 0.75, gap=0.01, raw=-0.1), _cell(1.0, 1.0, float("nan"), gap=0.5),
          _cell(0.5, 0.1, 0.8, gap=0.1), _cell(0.5, 1.0, 0.9, gap=0.2)]
    p3 = [_cell(1.0, 0.1, float("nan"), gap=0.01), _cell(1.0, 1.0, 0.3, gap=0.5),
          _cell(0.5, 0.1, 0.2, gap=0.1)]
    results = [_result(relaxed=p1), _result(relaxed=p2), _result(relaxed=p3)]
    rel = real_lm.relaxed_summary(results, (0.5, 1.0), (1.0, 0.1))
    assert (rel.tau, rel.hard_tau_r) == (1.0, 0.1)
    assert rel.rho_hard == pytest.approx((0.95 + 0.75) / 2)  # prompt 3's NaN left out
    assert rel.gap_spearman == pytest.approx([1.0, -1.0])
    assert rel.gap_spearman_mean == pytest.approx(0.0, abs=1e-12)
    assert (rel.min_raw, rel.max_raw) == (-0.1, 0.9)
    assert real_lm.rho_hard(results, 0.5, 1.0) == pytest.approx((0.8 + 0.9) / 2)


def test_relaxed_summary_without_three_cells_is_nan():
    results = [_result(relaxed=[_cell(1.0, 0.3, 0.9, gap=0.1), _cell(1.0, 1.0, 0.5, gap=0.4)])]
    rel = real_lm.relaxed_summary(results, (1.0,), (0.3, 1.0))
    assert rel.gap_spearman == [] and math.isnan(rel.gap_spearman_mean)
    assert rel.rho_hard == pytest.approx(0.9)


def test_relaxed_table_rows():
    results = [_result(task="max", relaxed=[_cell(1.0, 0.1, 0.95), _cell(2.0, 1.0, 0.5)])]
    lines = real_lm.relaxed_table(results).splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| max | 1 | 0.1 | 0.400 | 0.950 ± 0.010 | 0.500 | 0.200 ± 0.020 |")


# ----------------------------------------------------------------------- attention share
def test_attention_shares():
    shares, mean = real_lm.attention_shares([_result(share=0.2), _result(share=0.8),
                                             _result(share=0.5)])
    assert shares == [0.2, 0.8, 0.5] and mean == pytest.approx(0.5)


# ------------------------------------------------------------------------------- the screen
def _screen_of_every_task():
    out = []
    for i, task in enumerate(real_lm.TASKS):
        out += [_screened(task, 0.1 * i, first=0.2, answer_len=1),
                _screened(task, 0.1 * i + 0.05, first=0.4, answer_len=2)]
    return out


def test_task_means_spread_and_table():
    screened = _screen_of_every_task()
    means = real_lm.task_means(screened)
    assert list(means) == list(real_lm.TASKS)
    assert means["capitals"] == pytest.approx(0.025)
    assert means[real_lm.TASKS[-1]] == pytest.approx(0.6 + 0.025)
    assert real_lm.spread(means) == pytest.approx(0.6)
    lines = real_lm.task_table(screened, means).splitlines()
    assert len(lines) == 2 + len(real_lm.TASKS)
    assert lines[2] == "| capitals | 2 | 0.025 | 0.300 | 1, 2 |"


def test_pick_follows_the_band_and_raises_when_empty():
    screened = _screen_of_every_task()
    params = RealLMParams(n_prompts=3, value_lo=0.1, value_hi=0.32)
    picked = real_lm.pick(screened, params)
    # first in band per task, in suite order
    assert [(s.example.task, s.value) for s in picked] == [
        (real_lm.TASKS[1], 0.1), (real_lm.TASKS[2], 0.2), (real_lm.TASKS[3], pytest.approx(0.3))]
    with pytest.raises(RuntimeError, match="no held-out prompt has V"):
        real_lm.pick(screened, RealLMParams(value_lo=0.96, value_hi=0.99))


def test_screen_passes_the_held_out_suite_and_the_target(monkeypatch):
    seen = {}

    def fake(model, tokenizer, examples, target):
        seen.update(examples=examples, target=target)
        return ["ok"]

    monkeypatch.setattr(real_lm.lm_costates, "screen", fake)
    assert real_lm.screen("m", "t", RealLMParams(per_task=3, target="greedy")) == ["ok"]
    assert seen["target"] == "greedy"
    assert len(seen["examples"]) == 3 * len(real_lm.TASKS)
    assert [e.task for e in seen["examples"]][::3] == list(real_lm.TASKS)


def test_analyse_seeds_each_prompt(monkeypatch):
    calls = []
    monkeypatch.setattr(real_lm.lm_costates, "analyse_prompt", lambda *a: calls.append(a) or a[1])
    params = RealLMParams(seed=7, n_rollouts=64, group_size=8, relax_rollouts=32)
    out = real_lm.analyse("m", ["a", "b", "c"], params)
    assert out == ["a", "b", "c"]
    assert [c[-1] for c in calls] == [7000, 7001, 7002]
    assert calls[0][2:9] == (64, 8, params.group_sizes, params.temperatures,
                             params.relax_temperatures, 32, params.relax_blocks)


def test_load_turns_gradients_off(monkeypatch):
    lin = torch.nn.Linear(3, 2)
    monkeypatch.setattr(real_lm.lm_loading, "load_model",
                        lambda path, device: (lin, f"tok:{path}", f"dir:{device}"))
    model, tok, directory = real_lm.load(RealLMParams(model_path="tiny"))
    assert model is lin and (tok, directory) == ("tok:tiny", "dir:cpu")
    assert not any(p.requires_grad for p in model.parameters())
    assert real_lm.n_parameters(model) == 3 * 2 + 2


# ----------------------------------------------------------------------------- capitals
def test_capitals_log10_ratio():
    assert real_lm.capitals_log10_ratio(0.1, 0.001) == pytest.approx(2.0)
    assert real_lm.capitals_log10_ratio(0.001, 0.1) == pytest.approx(-2.0)


def test_capitals_probabilities_on_a_tiny_llama(tmp_path):
    from vgh_lib.lm import loading

    gguf = loading.write_tiny_llama_gguf(tmp_path / "tiny.gguf", seed=3)
    model, tok, _ = loading.load_model(gguf, root=tmp_path / "cache")
    p_paris, p_london = real_lm.capitals_probabilities(model, tok)
    ids = tok(real_lm.CAPITALS_PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, -1].double(), -1)
    for p, word in ((p_paris, " Paris"), (p_london, " London")):
        first = tok(word, add_special_tokens=False).input_ids[0]
        assert 0 < p < 1
        assert p == pytest.approx(math.exp(logp[first].item()), rel=1e-5)
    assert p_paris + p_london <= 1


# --------------------------------------------- the second specification of the relaxed claim
def test_relative_error_exact_against_its_definition():
    import numpy as np

    from vgh_lib.lm.costates import relative_error_exact

    gen = torch.Generator().manual_seed(0)
    folds = torch.randn(6, 3, 4, generator=gen, dtype=torch.float64) + 1.0
    g = torch.ones(3, 4, dtype=torch.float64) * 1.2
    r, se = relative_error_exact(folds, g)
    X = folds.reshape(6, -1).numpy()
    gv = g.reshape(-1).numpy()
    off = ~np.eye(6, dtype=bool)
    u = (X @ X.T)[off].mean()
    expect = math.sqrt(max(0.0, u - 2 * (X.mean(0) @ gv) + gv @ gv) / (gv @ gv))
    assert r == pytest.approx(expect) and se > 0


def _relaxed_result(gaps, rs):
    return SimpleNamespace(relaxed=[dict(gap=g, r=r) for g, r in zip(gaps, rs)])


def test_gap_r_test_pools_prompts_and_skips_those_with_too_few_cells():
    up = _relaxed_result([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    down = _relaxed_result([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    short = _relaxed_result([0.1, 0.2], [0.1, float("nan")])
    rho, p = real_lm.gap_r_test([up, up, short], n_perm=2000, seed=0)
    assert rho == pytest.approx(1.0) and p < 0.01
    rho, p = real_lm.gap_r_test([up, down], n_perm=2000, seed=0)
    assert rho == pytest.approx(0.0) and p > 0.3
    assert math.isnan(real_lm.gap_r_test([short])[0])


def test_pooled_spearman_power_has_its_size_under_the_null():
    crit, size = real_lm.pooled_spearman_power([9, 9, 9, 9], 0.0, n_sims=4000, seed=1)
    assert abs(size - 0.05) < 0.015 and 0 < crit < 0.6
    _, power = real_lm.pooled_spearman_power([9, 9, 9, 9], 0.7, n_sims=2000, seed=1)
    assert power > 0.9
