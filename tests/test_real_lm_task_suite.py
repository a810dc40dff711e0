"""Notebook 10's design (vgh_lib.experiments.real_lm_task_suite): the registered text, the rules that
choose the design, and its statistics, each against what a wrong implementation would give."""

import numpy as np
import pytest

from vgh_lib.experiments import designs
from vgh_lib.experiments import real_lm_task_suite as T
from vgh_lib.harness.glue import format_value


def test_the_registered_text_is_unchanged():
    assert T.REGISTRATION.text_sha256() == designs.TASK_SUITE_REGISTRATION_SHA256


def _run(task, arm, seed, before, after, n_unseen):
    return T.ArmRun(task, arm, 1e-3, seed, n_unseen, np.asarray(before, float), np.asarray(after, float),
                    [0, 5], [0.5, 0.5], 1.0)


def test_gain_matrix_splits_unseen_prompts_and_pairs_the_arms():
    runs = [_run("t", "grpo", 1, [0, 0, 0], [0.3, 0.1, 0.5], 2),
            _run("t", "grpo", 2, [0, 0, 0], [0.1, 0.1, 0.7], 2),
            _run("t", "control", 2, [0, 0, 0], [0.0, 0.1, 0.0], 2),
            _run("t", "control", 1, [0, 0, 0], [0.2, 0.0, 0.0], 2)]
    np.testing.assert_allclose(T.gain_matrix(runs, "t", "unseen"), [[0.3, 0.1], [0.1, 0.1]])
    np.testing.assert_allclose(T.gain_matrix(runs, "t", "all"), [[0.3, 0.1, 0.5], [0.1, 0.1, 0.7]])
    np.testing.assert_allclose(T.gain_matrix(runs, "t", "excess"), [[0.1, 0.1], [0.1, 0.0]])
    with pytest.raises(ValueError, match="outcome must be one of"):
        T.gain_matrix(runs, "t", "seen")
    assert T.eligible(["t", "u"], runs, 2) == ["t"] and T.eligible(["t"], runs, 3) == []


def test_screen_uses_the_fallback_range_only_when_too_few_tasks_enter():
    pass1 = {"a": 0.01, "b": 0.03, "c": 0.5, "d": 0.93, "e": 0.99}
    assert T.screen(pass1, 0.05, 0.9, min_tasks=1) == (["c"], (0.05, 0.9))
    assert T.screen(pass1, 0.05, 0.9, min_tasks=2) == (["b", "c", "d"], (0.02, 0.95))
    assert T.pilot_tasks({"x": 0.1, "y": 0.45, "z": 0.8, "w": 0.7}) == ["x", "y", "z"]


def test_choose_lrs_takes_each_arms_largest_rate_that_never_collapsed():
    def run(arm, lr, curve):
        return T.ArmRun("t", arm, lr, 0, 0, np.zeros(0), np.zeros(0), list(range(len(curve))), curve, 1.0)

    runs = [run("grpo", 3e-3, [0.5, 0.2]), run("grpo", 1e-3, [0.5, 0.47]), run("grpo", 3e-4, [0.5, 0.6]),
            run("control", 1.0, [0.5, 0.7]), run("control", 0.3, [0.5, 0.4])]
    assert T.choose_lrs(runs) == {"grpo": 1e-3, "control": 1.0}


def test_params_reject_the_pilot_and_short_seeds_and_a_single_seed():
    from vgh_lib.errors import ParameterError

    with pytest.raises(ParameterError, match="out of range"):
        T.TaskSuiteParams(grpo_seeds=(0, 1))
    with pytest.raises(ParameterError, match="must not contain"):
        T.TaskSuiteParams(grpo_seeds=(1, 1000))
    with pytest.raises(ParameterError, match="at least 2 distinct seeds"):
        T.TaskSuiteParams(grpo_seeds=(1,)).check()
    with pytest.raises(ParameterError, match="must be below"):
        T.TaskSuiteParams(screen_lo=0.5, screen_hi=0.4).check()


SMOKE = dict(model_path="tiny", target="greedy", tasks=("add two-digit", "plurals", "first letter"),
             screen_prompts=3, screen_lo=0.0, screen_hi=1.0, min_tasks=3, train_limit=4,
             unseen_limit=3, seen_limit=1, min_unseen=2, probe_prompts=2, grpo_steps=2, grpo_prompts=2,
             group_size=4, train_layers=1, probe_every=1, short_steps=1, signal_batches=3,
             signal_prompts=2, coverage_k=16, n_boot=100, n_perm=100, jobs=1)


def test_each_arm_trains_only_its_own_parameters_and_puts_the_model_back():
    """The control arm moves only its output bias (the blocks are untouched, the held-out values
    still change); the GRPO arm moves the top block; both leave the cached model as it was.
    A pilot job (held_out=False) evaluates no held-out prompt."""
    import torch

    d = T.TaskSuiteParams(**SMOKE, grpo_lr=0.05, control_lr=0.5).design()
    model, _ = T.model_for("tiny")
    before = [p.detach().clone() for p in model.parameters()]
    ctrl = T.run_arm(T.ArmJob(d, "first letter", "control", 0.5, 1))
    grpo = T.run_arm(T.ArmJob(d, "first letter", "grpo", 0.05, 1))
    pilot = T.run_arm(T.ArmJob(d, "first letter", "grpo", 0.05, 1, held_out=False))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert ctrl.before.shape == grpo.before.shape == (ctrl.n_unseen + 1,) and ctrl.n_unseen == 3
    np.testing.assert_allclose(ctrl.before, grpo.before)
    assert np.abs(ctrl.gains).max() > 1e-4 and np.abs(grpo.gains).max() > 1e-4
    assert pilot.before.size == 0 and pilot.probe_value == grpo.probe_value


def test_the_study_runs_end_to_end_on_a_tiny_model():
    p = T.TaskSuiteParams(**SMOKE)
    pass1 = T.screen_tasks(p)
    tasks, used = T.screen(pass1, p.screen_lo, p.screen_hi, p.min_tasks)
    assert tasks == list(p.tasks) and all(0 < v < 1 for v in pass1.values())
    panels = T.run_panels(p, tasks)
    runs = T.run_arms(p, tasks)
    assert len(runs) == len(tasks) * 2 * len(p.grpo_seeds)
    res = T.analyse(tasks, panels, runs, p)
    assert set(res) == {"unseen", "all", "excess"}
    assert set(res["unseen"].correlations) == set(T.PANEL) and "I" not in res["unseen"].lead_of_i
    for pan in panels:
        assert pan.panel.values["I"] == pytest.approx(pan.panel.values["S"] * pan.panel.values["H"])
    # one job per task gives the same panels and runs, in the same order
    panels2, runs2 = T.run_study(p, tasks)
    assert [r.task for r in runs2] == [r.task for r in runs] and [r.arm for r in runs2] == [r.arm for r in runs]
    for a, b in zip(runs2, runs):
        np.testing.assert_allclose(a.after, b.after, rtol=1e-5)
        np.testing.assert_allclose(a.probe_value, b.probe_value, rtol=1e-5)
    for a, b in zip(panels2, panels):
        assert a.task == b.task and a.panel.values["S"] == pytest.approx(b.panel.values["S"], rel=1e-4)


def test_the_committed_unseen_seed_run_is_notebook_10s_on_fresh_seeds():
    data = T.load_unseen_seeds()
    assert data is not None and data["profile"] == "default"
    assert not set(data["parameters"]["grpo_seeds"]) & ({T.PILOT["seed"]} | set(T.TaskSuiteParams().grpo_seeds))
    assert {c["id"] for c in data["claims"]} == {"p10.unseen.p", "p10.all.p", "p10.excess.p", "p10.not_beaten"}
    # the committed file names its seeds `seeds` (before the rename); they are read as grpo_seeds
    run, verdict = T.unseen_seeds_replication(data)
    seeds = ", ".join(map(str, data["parameters"]["grpo_seeds"]))
    primary = {c["id"]: c for c in data["claims"]}["p10.unseen.p"]
    assert run == f"GRPO seeds {seeds} nobody tuned on"
    assert verdict.startswith("holds" if primary["passed"] else "does not hold")


def test_load_unseen_seeds_rejects_another_notebooks_file(tmp_path):
    import json

    path = tmp_path / "x.json"
    path.write_text(json.dumps({"notebook": "09_what_predicts_rl_gain"}))
    with pytest.raises(ValueError, match="not a claims file of notebook 10"):
        T.load_unseen_seeds(path)
    assert T.load_unseen_seeds(tmp_path / "missing.json") is None


def test_the_committed_unseen_seed_run_and_a_pilot_rerun_as_tables():
    unseen = T.load_unseen_seeds()
    header, rows = T.unseen_seeds_table(unseen)
    assert header[1] == "seeds " + ", ".join(map(str, unseen["parameters"]["grpo_seeds"]))
    assert [r[0] for r in rows] == [c["id"] for c in unseen["claims"]]
    assert [r[2] for r in rows] == ["holds" if c["passed"] else "fails" for c in unseen["claims"]]
    assert [r[1] for r in rows] == [format_value(c["value"]) for c in unseen["claims"]]
    committed = T.load_pilot()
    rerun = {"chosen": {"grpo": 3e-4, "control": 0.1}, "tasks": ["a", "b"], "pilot_tasks": ["a"]}
    header, rows = T.pilot_rerun_table(committed, rerun)
    assert header == ["rule's choice", "committed design", "this machine's rerun"]
    assert rows[0][1:] == [format_value(designs.TASK_SUITE_CHOSEN["grpo_lr"]), format_value(3e-4)]
    assert rows[2][2] == "2" and rows[3] == ["pilot tasks", ", ".join(committed["pilot_tasks"]), "a"]
