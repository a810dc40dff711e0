"""The experiment modules' jobs and the logic moved out of the notebooks: typed jobs cover the
design and cross process boundaries unchanged; each summary against a hand computation."""

import dataclasses
import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vgh_lib.common import impact, parallel, stats
from vgh_lib.errors import ParameterError
from vgh_lib.experiments import probe, real_lm_impact, pretraining_trajectory, value_impact
from vgh_lib.experiments.probe import ProbeBookParams
from vgh_lib.experiments.theorem1 import Theorem1Params
from vgh_lib.experiments.value_impact import Factors, GainRun, ValueImpactParams
from vgh_lib.tiny import grpo, jobs, sampling
from vgh_lib.tiny.models import load_local, save_checkpoint, tiny_gpt2
from vgh_lib.tiny.pretrain import PretrainConfig
from vgh_lib.tiny.tasks import build_tokenizer


def _checkpoints(*steps, root="/ckpt"):
    return [SimpleNamespace(path=f"{root}/step{s}", step=s) for s in steps]


def test_from_namespace_reads_the_parameters_cell_and_refuses_what_is_missing():
    ns = {**dataclasses.asdict(Theorem1Params()), "n_rollouts": 2000, "unrelated": 1}
    assert Theorem1Params.from_namespace(ns).n_rollouts == 2000  # other globals are ignored
    del ns["sigma"]
    with pytest.raises(ParameterError, match="defines no parameter.*'sigma'"):
        Theorem1Params.from_namespace(ns)
    with pytest.raises(ParameterError, match="n_rollouts"):  # and the values are validated
        Theorem1Params.from_namespace({**dataclasses.asdict(Theorem1Params()), "n_rollouts": 1})


def test_confirmation_jobs_cover_every_checkpoint_optimizer_and_seed():
    p = ValueImpactParams(grpo_seeds=(5, 6, 7), adamw_lr=1e-3, sgd_lr=0.2)
    trajs = {1: _checkpoints(86, 113), 2: _checkpoints(86)}
    gain = p.gain_jobs(trajs)
    assert len(gain) == 3 * 2 * 3  # checkpoints × optimizers × seeds
    assert {(j.pretrain.seed, j.step, j.grpo.optimizer, j.grpo.lr, j.grpo.seed) for j in gain} == {
        (t, c.step, opt, lr, s) for t, cps in trajs.items() for c in cps
        for opt, lr in (("adamw", 1e-3), ("sgd", 0.2)) for s in (5, 6, 7)}
    assert all(j.grpo.steps == p.grpo_steps and j.pretrain.checkpoint_at == p.checkpoint_grid
               for j in gain)
    factors = p.factor_jobs(trajs)
    assert [(f.pretrain.seed, f.step, f.seed) for f in factors] == [(1, 86, 1), (1, 113, 1), (2, 86, 2)]
    assert all(f.eval_samples == p.eval_samples and f.k == p.k for f in factors)
    for job in (gain[0], factors[0]):  # what a process pool or Dask sends
        assert pickle.loads(pickle.dumps(job)) == job
        assert job.paths() == (job.path,)
    pilot = value_impact.pilot_jobs(_checkpoints(10), p.pretrain_config(), p)
    assert len(pilot) == sum(len(v) for v in value_impact.PILOT["lrs"].values())
    assert {j.grpo.seed for j in pilot} == {0} and {j.grpo.steps for j in pilot} == {value_impact.PILOT["steps"]}


def test_a_job_names_only_the_paths_that_exist(tmp_path):
    p = ValueImpactParams()
    (tmp_path / "step86").mkdir()
    here, gone = p.gain_jobs({1: _checkpoints(86, 113, root=str(tmp_path))})[:: len(p.grpo_seeds) * 2]
    assert parallel._paths_in(here) == [str(tmp_path / "step86")]
    assert parallel._paths_in(gone) == []


def _run(traj, step, opt, seed, before, after, probe=(0.5, 0.5)):
    return GainRun(traj, step, opt, 1e-3, seed, np.array(before, float), np.array(after, float),
                   [0, 1], list(probe), 0.0)


def test_learning_region_collapse_and_the_mid_checkpoint_gain():
    k, n = 4, 8
    factors = [Factors(1, step, np.eye(2), np.array(c), n, k)
               for step, c in ((10, [0, 0]), (20, [1, 0]), (30, [8, 8]))]
    # pass@4 of 0/8, of (1/8, 0/8) and of 8/8: only the middle one lies in [0.1, 0.99]
    assert [impact.mean_passk(f.successes, n, k) for f in factors] == [0.0, 0.25, 1.0]
    assert value_impact.in_learning_region(factors, 1) == 1
    assert value_impact.in_learning_region(factors, 2) == 0
    runs = [_run(1, step, opt, s, [b, b], [b + g, b + g], probe=(0.5, 0.5 - drop))
            for step, b in ((10, 0.1), (20, 0.45), (30, 0.9))
            for opt, g, drop in (("adamw", 0.1, 0.05), ("sgd", -0.1, 0.06)) for s in (0, 1)]
    assert value_impact.collapsed(runs, "adamw") == []  # 0.05 is not *more* than 0.05
    assert len(value_impact.collapsed(runs, "sgd")) == 6
    p = ValueImpactParams(n_boot=200)
    mid = value_impact.mid_checkpoint_gain(p, factors, runs, 1)
    assert (mid.step, mid.pass1) == (20, pytest.approx(0.45))  # the pass@1 closest to 0.5
    assert mid.gain == pytest.approx(0.1) and mid.ci == (pytest.approx(0.1), pytest.approx(0.1))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    tok = build_tokenizer()
    return save_checkpoint(tiny_gpt2(tok, 1, 16, 2, 16, seed=3), tok,
                           tmp_path_factory.mktemp("ckpt") / "step10")


def test_run_factors_is_the_signal_gram_and_an_evaluation(tiny_checkpoint):
    pre = PretrainConfig(n_digits=1, n_eval=24, pretrain_steps=10)
    job = jobs.FactorJob(str(tiny_checkpoint), 10, pre, signal_batches=3, signal_prompts=2,
                                 group_size=4, temperature=1.0, seed=7, factor_prompts=5,
                                 eval_samples=6, k=2)
    threads = torch.get_num_threads()
    try:
        out = jobs.run_factors(job)
    finally:
        torch.set_num_threads(threads)
    model, tok = load_local(tiny_checkpoint)
    train, _ = pre.task_obj().split()
    np.testing.assert_array_equal(out.gram, grpo.signal_gram(model, tok, train, 3, 2, 4, 1.0, 7))
    ev = sampling.evaluate(model, tok, train[-5:], 6, 2, 1.0, torch.Generator().manual_seed(7 + 424_242))
    np.testing.assert_array_equal(out.successes, ev.successes)
    assert (out.trajectory, out.step, out.n_samples, out.k) == (pre.seed, 10, 6, 2)


def test_a_saved_checkpoint_reloads_with_the_same_logits(tiny_checkpoint):
    assert pretraining_trajectory.reload_difference(tiny_checkpoint, "1+2=") == 0.0


def test_mid_gain_summaries():
    hist = SimpleNamespace(largest_drop=lambda: 0.02)
    runs = [SimpleNamespace(before=np.array([0.2, 0.4]), after=np.array(a), history=hist)
            for a in ([0.3, 0.5], [0.5, 0.7])]
    mid = pretraining_trajectory.MidGain(10, runs, np.zeros((2, 2)), 0.15, (0.1, 0.2))
    assert mid.pass1_before == pytest.approx(0.3)
    assert mid.pass1_after == pytest.approx(0.5)  # the mean over seeds of each seed's pass@1
    assert mid.largest_drop == 0.02


def test_probe_study_rankings_against_a_loop():
    p = ProbeBookParams(confirmation_seeds=(1,), probe_seeds=(0, 1))
    steps = {1: [10, 20, 30]}
    ref = {(1, 10): {"I": 1.0, "S": 3.0, "H": 0.1}, (1, 20): {"I": 3.0, "S": 2.0, "H": 0.2},
           (1, 30): {"I": 2.0, "S": 1.0, "H": 0.3}}
    def res(step, i):
        return SimpleNamespace(step=step, values={"I": i, "S": -i, "H": i})
    probes = {(1, 0): [res(30, 2.5), res(10, 0.5), res(20, 3.5)],   # out of order on purpose
              (1, 1): [res(10, 3.0), res(20, 2.0), res(30, 1.0)]}
    vals = probe.probe_values(probes, steps)
    np.testing.assert_array_equal(vals[(1, 0, "I")], [0.5, 3.5, 2.5])
    spear = probe.rank_agreement(p, vals, ref, steps)
    assert spear["I"].shape == (1, 2)
    assert spear["I"][0, 0] == pytest.approx(1.0) and spear["I"][0, 1] == pytest.approx(-0.5)
    assert spear["S"][0, 0] == pytest.approx(stats.spearman([-0.5, -3.5, -2.5], [3.0, 2.0, 1.0]))
    top_ref, top_probe, agree = probe.top_agreement(p, vals, ref, steps)
    assert top_ref == {1: 20} and top_probe == {1: [20, 10]} and agree == 0.5


def test_probe_jobs_cover_every_seed_and_checkpoint_in_step_order():
    p = ProbeBookParams(confirmation_seeds=(1, 2), probe_seeds=(0, 3), probe_samples=8, probe_k=4)
    keyed = p.probe_jobs({1: _checkpoints(10, 20), 2: _checkpoints(10)})
    assert [(k, j.path[-2:]) for k, j in keyed] == [((1, 0), "10"), ((1, 0), "20"), ((1, 3), "10"),
                                                    ((1, 3), "20"), ((2, 0), "10"), ((2, 3), "10")]
    assert {j.config.seed for (_, ps), j in keyed if ps == 3} == {3}
    assert all(j.config.samples == 8 and j.config.k == 4 and j.digits == p.n_digits for _, j in keyed)


def test_real_lm_collapse_and_the_split_interval():
    def run(task, seed, drop, gains):
        return real_lm_impact.TaskRun(task, 1e-4, seed, np.zeros(len(gains)), np.array(gains, float),
                                      [0, 5], [0.5, 0.5 - drop], [0.0], 0.0)
    runs = [run("a", s, d, [0.1 * s, 0.2]) for s, d in ((1, 0.0), (2, 0.06), (3, 0.05))]
    assert [r.seed for r in real_lm_impact.collapsed(runs)] == [2]
    factors = [real_lm_impact.TaskFactors("a", np.array([0.5, 0.5]), np.eye(2), 4, 0.0)]
    data = real_lm_impact.task_data(factors, runs)
    p = real_lm_impact.RealLMImpactParams(n_boot=500)
    parts = real_lm_impact.interval_by_source(p, data)
    both = real_lm_impact.mean_gain_ci(data, 500, p.seed, scale=False)
    assert parts["both, not widened"] == both
    # every prompt's mean over seeds is 0.2: with the seeds held fixed the interval is a point
    m, lo, hi = parts["prompts only, not widened"]
    assert (m, lo, hi) == (pytest.approx(0.2), pytest.approx(0.2), pytest.approx(0.2))
    _, lo_s, hi_s = parts["seeds only, widened"]
    assert lo_s < 0.2 < hi_s  # the seeds differ on prompt 1
    assert p.widening() == pytest.approx(impact.small_sample_scale(len(p.grpo_seeds)))
    assert real_lm_impact.RealLMImpactParams().critical_spearman() == pytest.approx(0.714, abs=1e-3)  # n = 7


def test_panel_job_measures_every_predictor_from_its_own_data(tiny_checkpoint):
    """Notebook 09's job: the exact predictors are panel's closed forms of the measured
    log-probabilities (whose exponentials are tiny.sampling.exact_values), the NLL is that of
    the held-out prompts, the short run's predictor is its probe rise, log step is log(step)."""
    from vgh_lib.common import panel
    from vgh_lib.experiments import what_predicts_rl_gain as P
    from vgh_lib.tiny import sampling
    from vgh_lib.tiny.models import load_local

    prm = P.PredictorParams(recipes=("base", "wide", "slow lr"), recipe_seeds=(1, 2, 3))
    cfg = prm.pretrain_config("base", 1)
    short = prm.grpo_config(lr=prm.grpo_lr, seed=prm.short_seed, steps=2)
    job = P.PanelJob("base", str(tiny_checkpoint), 10, cfg, 3, 4, 4, 1.0, 12, 4, 16, short, 5)
    pt = P.run_panel(job)
    train, held_out = cfg.task_obj().split()
    model, tok = load_local(tiny_checkpoint)
    np.testing.assert_allclose(np.exp(pt.logp), sampling.exact_values(model, tok, train[-12:], 1.0),
                               rtol=1e-5)
    terms = panel.per_prompt(pt.logp, 4, 4, 16)
    for name in panel.EXACT:
        if name != "NLL":
            assert pt.values[name] == pytest.approx(terms[name].mean())
    assert pt.values["NLL"] == pytest.approx(-pt.logp_held_out.mean())
    assert pt.logp_held_out.size == len(held_out)
    assert pt.values["log step"] == pytest.approx(np.log(10))
    assert pt.values["short RL"] == pytest.approx(pt.short_probe[-1] - pt.short_probe[0])
    assert pt.values["I"] == pytest.approx(pt.values["S"] * pt.values["H"])
    assert pt.gram.shape == (3, 3) and set(pt.values) == set(P.PREDICTORS)


def test_every_committed_design_choice_has_its_rule_in_words():
    """Notebook 05's pilot table shows rule, committed value and re-derivation per choice."""
    from vgh_lib.experiments import value_impact
    from vgh_lib.experiments.designs import PILOT_CHOSEN

    assert set(value_impact.RULE_TEXT) == set(PILOT_CHOSEN)


def test_probe_drop_phrase_writes_no_drop_in_words():
    from vgh_lib.experiments.pretraining_trajectory import probe_drop_phrase

    assert probe_drop_phrase(0.0) == "never fell below its start"
    assert probe_drop_phrase(-0.01) == "never fell below its start"
    assert probe_drop_phrase(0.0123) == "fell at most 0.0123 below its start"


def test_real_lm_tables_show_each_task_and_seed_in_order():
    from vgh_lib.common import impact as impact_lib

    def run(task, seed, gain):
        return real_lm_impact.TaskRun(task, 3e-4, seed, np.zeros(2), np.full(2, gain), [0], [0.5], [0.5], 1.0)

    runs = [run("b", 2, 0.3), run("a", 2, -0.1), run("b", 1, 0.1), run("a", 1, 0.2)]
    per_seed = real_lm_impact.seed_gains(["a", "b"], runs)
    assert per_seed == {"a": pytest.approx([0.2, -0.1]), "b": pytest.approx([0.1, 0.3])}
    header, rows = real_lm_impact.seed_table((1, 2), per_seed)
    assert header == ["task", "GRPO seed 1", "GRPO seed 2"]
    assert rows == [["a", "+0.200", "-0.100"], ["b", "+0.100", "+0.300"]]
    factors = [real_lm_impact.TaskFactors(t, np.zeros(2), np.eye(2), 4, 1.0) for t in ("a", "b")]
    res = impact_lib.Analysis("adamw", [np.arange(2)], [np.array([0.15, -0.2])],
                              [np.array([[0.1, 0.2], [-0.3, -0.1]])],
                              [{"pass@1": np.array([0.25, 0.5]), "H": np.array([0.5, 0.4]), "S": np.array([2.0, 3.0]),
                                "I": np.array([1.0, 1.2]), "reward std": np.array([0.4, 0.5])}],
                              {}, {}, {}, {}, {}, 1.0)
    rows = real_lm_impact.task_rows(factors, res)
    assert len(real_lm_impact.TASK_TABLE_HEADER) == len(rows[0])
    assert rows[1] == ["b", "0.500", "0.400", "3", "1.2", "0.500", "-0.200 [-0.300, -0.100]"]


def test_probe_comparison_rows_put_the_probe_beside_the_reference():
    params = probe.ProbeBookParams(confirmation_seeds=(1,), probe_seeds=(5, 6))
    reference = {(1, 10): {"pass@1": 0.25, "H": 0.5, "S": 2.0, "I": 1.0},
                 (1, 20): {"pass@1": 0.5, "H": 0.3, "S": 3.0, "I": 0.9}}
    values = {(1, 5, "I"): np.array([1.0, 0.8]), (1, 6, "I"): np.array([1.2, 1.0])}
    rows = probe.comparison_rows(params, {1: [10, 20]}, reference, values)
    assert rows == [["1", "10", "0.250", "0.500", "2", "1", "1.1 ± 0.14"],
                    ["1", "20", "0.500", "0.300", "3", "0.9", "0.9 ± 0.14"]]
    assert len(rows[0]) == len(probe.COMPARISON_HEADER)
