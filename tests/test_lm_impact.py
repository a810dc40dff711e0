"""Value impact across tasks in a real LM (vgh_lib.experiments.real_lm_impact), on a tiny random llama."""


import dataclasses

import numpy as np
import pytest
import torch

from vgh_lib.common import impact
from vgh_lib.experiments import real_lm_impact as lm_impact
from vgh_lib.lm import grpo as lm_grpo
from vgh_lib.lm import loading as real_lm


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    gguf = real_lm.write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", seed=3)
    directory = real_lm.resolve_model_dir(gguf, root=tmp_path_factory.mktemp("cache"))
    return lm_impact.Design(model_path=str(directory), target="greedy", train_limit=6,
                            held_out_limit=4, probe_prompts=3, grpo_steps=3, grpo_prompts=3,
                            group_size=6, train_layers=1, probe_every=1, signal_batches=3,
                            signal_prompts=2, k=4)


def test_gain_job_measures_a_paired_gain_and_leaves_the_model_as_it_was(design):
    model, tok = lm_impact.model_for(design.model_path)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    flags = lm_grpo.grad_flags(model)
    job = lm_impact.gain_jobs(design, ["sums"], [3e-3], [1])[0]
    run = lm_impact.run_gain(job)
    assert lm_grpo.grad_flags(model) == flags   # no parameter left frozen or unfrozen
    held = lm_impact.task_pairs(model, tok, "sums", "held_out", design.held_out_limit, "greedy")
    # the model is back to its weights, and `before` is its exact held-out value
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    # (the job uses the cached bottom blocks of lm_prefix: float32 agreement with the plain path)
    np.testing.assert_allclose(run.before, lm_grpo.exact_values(model, held), rtol=1e-4)
    assert run.probe_steps == [0, 1, 2, 3] and run.after.shape == run.before.shape
    assert np.any(run.after != run.before)
    # `after` is the held-out value after GRPO on this task's training prompts, with this
    # job's learning rate and seed (plain path, float32 agreement)
    train = lm_impact.task_pairs(model, tok, "sums", "train", design.train_limit, "greedy")
    params = lm_grpo.train_top_layers(model, design.train_layers)
    with lm_grpo.restored(params):
        lm_grpo.train(model, train, train[:design.probe_prompts], design.grpo_config(lr=3e-3, seed=1))
        np.testing.assert_allclose(run.after, lm_grpo.exact_values(model, held), rtol=1e-3, atol=1e-7)
    # the same job gives the same run (the same worker or another one)
    again = lm_impact.run_gain(job)
    np.testing.assert_array_equal(again.after, run.after)
    assert again.probe_value == run.probe_value


def test_greedy_target_replaces_the_answer_by_the_models_own(design):
    model, tok = lm_impact.model_for(design.model_path)
    task = lm_impact.task_pairs(model, tok, "sums", "train", 3, "task")
    greedy = lm_impact.task_pairs(model, tok, "sums", "train", 3, "greedy")
    for (p, a), (q, b) in zip(task, greedy):
        assert torch.equal(p, q) and a.shape == b.shape
    # the greedy answer is the model's most likely token at each step
    v_task, v_greedy = lm_grpo.exact_values(model, task), lm_grpo.exact_values(model, greedy)
    assert np.all(v_greedy >= v_task - 1e-12)
    with pytest.raises(ValueError, match="target"):
        lm_impact.task_pairs(model, tok, "sums", "train", 3, "gold")


def test_factor_job_gives_exact_values_and_the_signal_gram(design):
    out = lm_impact.run_factors(lm_impact.factor_jobs(design, ["products"], seed=2)[0])
    model, tok = lm_impact.model_for(design.model_path)
    train = lm_impact.task_pairs(model, tok, "products", "train", design.train_limit, "greedy")
    np.testing.assert_allclose(out.values, lm_grpo.exact_values(model, train), rtol=1e-4)
    prefix = lm_impact.prefix_for(design.model_path, design.device, design.train_layers)
    assert prefix is not None   # the tiny llama uses the cached bottom blocks
    gram = lm_grpo.signal_gram(model, train, 3, 2, design.group_size, 1.0, 1, 2, prefix)
    np.testing.assert_allclose(out.gram, gram, rtol=1e-12)
    plain = lm_grpo.signal_gram(model, train, 3, 2, design.group_size, 1.0, 1, 2)
    np.testing.assert_allclose(out.gram, plain, rtol=1e-3, atol=1e-6 * np.abs(plain).max())
    assert out.k == design.k


def _run(task, lr, seed, drop=0.0, gains=(0.1,)):
    """A run whose probe curve falls by exactly ``drop`` (from ``drop`` to 0)."""
    g = np.asarray(gains, float)
    return lm_impact.TaskRun(task, lr, seed, np.zeros(g.size), g, [0, 5], [drop, 0.0], [0.5], 1.0)


def test_pilot_rules():
    pass1 = {"a": 0.75, "b": 0.375, "c": 0.4375, "d": 0.21875, "e": 0.3125, "f": 0.125}
    assert lm_impact.pilot_tasks(pass1) == ["a", "c", "d"]
    # an exact tie (0.25 ± 0.03125) goes to the task that comes first
    assert lm_impact.pilot_tasks({"p": 0.28125, "q": 0.21875, "r": 0.5, "s": 0.9}) == ["p", "r", "s"]
    # the same task never counts twice: two targets near one task take the next-closest
    assert lm_impact.pilot_tasks({"x": 0.5, "y": 0.1, "z": 0.95}, (0.45, 0.5, 0.9)) == ["x", "y", "z"]
    runs = [_run("a", 1e-4, 0, drop=0.06), _run("b", 1e-4, 0), _run("a", 3e-5, 0, drop=0.05),
            _run("b", 3e-5, 0, drop=0.01), _run("a", 1e-5, 0), _run("b", 1e-5, 0)]
    assert lm_impact.choose_lr(runs) == 3e-5   # 1e-4 fell 0.06 on task a; 0.05 is allowed
    assert lm_impact.choose_lr([_run("a", 1e-4, 0, drop=0.2)]) == 1e-4  # none safe: the smallest


def test_task_data_and_the_mean_gain_interval():
    factors = [lm_impact.TaskFactors(t, np.array([0.2, 0.6]), np.eye(3), 4, 0.0) for t in ("a", "b")]
    runs = [_run("a", 1e-5, s, gains=(0.1 * s, 0.1 * s)) for s in (1, 2, 3)]
    runs += [_run("b", 1e-5, s, gains=(0.4, 0.4)) for s in (2, 1, 3)]
    data = lm_impact.task_data(factors, runs)
    assert [cp.step for cp in data] == [0, 1]
    np.testing.assert_allclose(data[0].gains, [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]])
    assert data[1].gain() == pytest.approx(0.4)
    assert data[0].predictors()["pass@1"] == pytest.approx(0.4)
    mean, lo, hi = lm_impact.mean_gain_ci(data, 2000, seed=1)
    assert mean == pytest.approx(0.3)
    # Only task a varies, over seeds. Its resampled seed mean is 0.1 or 0.3 with probability
    # 1/27 each (> 2.5 %), so the percentile interval of the mean over tasks is exactly
    # 0.3 ± 0.05, widened by the small-sample factor of 3 seeds.
    scale = impact.small_sample_scale(3)
    assert (lo, hi) == (pytest.approx(0.3 - 0.05 * scale), pytest.approx(0.3 + 0.05 * scale))
    with pytest.raises(ValueError, match="no GRPO runs"):
        lm_impact.task_data(factors + [dataclasses.replace(factors[0], task="c")], runs)


def test_jobs_cover_every_task_rate_and_seed(design):
    js = lm_impact.gain_jobs(design, ["a", "b"], [1e-4, 1e-5], [1, 2, 3], steps=7)
    assert len(js) == 12 and {(j.task, j.lr, j.seed) for j in js} == {
        (t, lr, s) for t in "ab" for lr in (1e-4, 1e-5) for s in (1, 2, 3)}
    assert all(j.steps == 7 and j.design == design for j in js)


def test_the_mean_gain_interval_split_by_source():
    """Holding one source fixed: seeds only (prompts fixed) sees only the spread between
    seeds, prompts only only the spread between prompts; with both fixed the interval is a
    point; the t-widening multiplies the deviations."""
    factors = [lm_impact.TaskFactors("a", np.array([0.5]), np.eye(2), 4, 0.0)]
    # seeds agree exactly; prompts differ: only prompt resampling makes spread
    runs = [_run("a", 1e-5, s, gains=(0.0, 0.2, 0.4)) for s in (1, 2, 3)]
    data = lm_impact.task_data(factors, runs)
    _, lo, hi = lm_impact.mean_gain_ci(data, 2000, prompts=False)
    assert lo == hi == pytest.approx(0.2)
    # prompts only: the resampled mean of (0, 0.2, 0.4) is 0 or 0.4 with probability 1/27 each
    _, lo, hi = lm_impact.mean_gain_ci(data, 2000, seeds=False, scale=False)
    assert (lo, hi) == (pytest.approx(0.0, abs=1e-12), pytest.approx(0.4))
    _, lo_w, hi_w = lm_impact.mean_gain_ci(data, 2000, seeds=False, scale=True)
    assert hi_w - lo_w == pytest.approx(impact.small_sample_scale(3) * 0.4, rel=1e-9)
    _, lo, hi = lm_impact.mean_gain_ci(data, 500, seeds=False, prompts=False)
    assert lo == hi == pytest.approx(0.2)
