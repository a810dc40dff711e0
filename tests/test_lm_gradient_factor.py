"""Notebook 12's study (vgh_lib.experiments.lm_gradient_factor): its registration, its rules and
its analysis. Running a task on a model is covered by the smoke notebook and by
tests/test_lm_grpo.py (the exact signal against sampled updates)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vgh_lib.errors import ParameterError
from vgh_lib.experiments import designs
from vgh_lib.experiments import lm_gradient_factor as L


def test_the_registered_text_is_unchanged_and_the_simulation_names_it():
    assert L.REGISTRATION.text_sha256() == designs.LM_GRADIENT_REGISTRATION_SHA256
    sim = L.load_simulation()
    assert sim["n_tasks"] == len(L.eligible_tasks()) == 24
    # a size far from 0.05 would be a test that cannot pass or one that passes on nothing
    for s in [*sim["size"], sim["size_heavy_noise"]]:
        assert abs(s["rate"] - 0.05) < 4 * np.sqrt(0.05 * 0.95 / s["n_sims"])
    # power rises with the effect at every reliability
    for rel in (1.0, 0.8, 0.6):
        rates = [p["rate"] for p in sim["power"] if p["reliability"] == rel]
        assert np.all(np.diff(rates) > -0.05) and rates[-1] > rates[0] + 0.2


def test_seeds_never_overlap_and_never_use_notebook_10s_outside_the_pilot():
    conf = L.study_seeds(L.FIRST_CONFIRMATION_SEED, max(L.RULES["seed_choices"]))
    rep = L.study_seeds(L.FIRST_REPLICATION_SEED, max(L.RULES["seed_choices"]))
    assert not set(conf) & set(range(5)) and not set(rep) & (set(conf) | set(range(5)))
    assert set(L.PILOT_SEEDS) <= set(range(5))


def test_parameters_are_checked():
    with pytest.raises(ParameterError, match="grpo_prompts"):
        L.LMGradientParams(grpo_prompts=65, train_limit=64)
    with pytest.raises(ParameterError, match="adamw_batches"):
        L.LMGradientParams(adamw_batches=1)


def test_seed_rule_takes_the_smallest_reliable_choice_that_fits():
    # 0.6 at 4 seeds: 6 → 0.69, 8 → 0.75, 10 → 0.79, 12 → 0.82; 24 tasks, 10 s panel, 5 s a run
    out = L.choose_design(0.6, 4, 10.0, 5.0, 5.0, 24)
    assert out["projected_reliability"]["12"] == pytest.approx(12 / 4 * 0.6 / (1 + 2 * 0.6))
    assert out["n_grpo_seeds"] == 12          # 24 (10 + 60) / 2 = 840 s fits 900
    assert out["control"] is False            # with control: 24 (10 + 120) / 2 = 1560 s
    # reliable already at 6 seeds, and cheap: 6 with the control
    out = L.choose_design(0.8, 4, 10.0, 2.0, 2.0, 24)
    assert out["n_grpo_seeds"] == 6 and out["control"] is True
    # none reaches 0.8: the largest that fits (10 s a run: 6 → 840 s, 8 → 1080 s)
    assert L.choose_design(0.3, 4, 10.0, 10.0, 10.0, 24)["n_grpo_seeds"] == 6
    assert L.choose_design(0.3, 4, 10.0, 5.0, 5.0, 24)["n_grpo_seeds"] == 12
    # nothing fits: the floor
    assert L.choose_design(0.9, 4, 100.0, 50.0, 50.0, 24)["n_grpo_seeds"] == 6


def _record(rng, beta: float, n=24, seeds=6, noise=0.01, control=False):
    rows = []
    z = rng.uniform(0.05, 0.45, n)
    logs = 3 * z + rng.normal(0, 0.5, n)
    resid = logs - np.polyval(np.polyfit(z, logs, 1), z)
    for i in range(n):
        truth = np.tanh(4 * z[i]) * 0.05 + beta * resid[i]
        values = {p: float(rng.uniform(0.1, 1)) for p in L.PREDICTORS}
        values.update({"reward std": float(z[i]), "S exact": float(np.exp(logs[i])),
                       "I exact": float(np.exp(logs[i]))})
        gains = {"grpo": {"unseen": list(truth + rng.normal(0, noise, seeds)), "all": [0.0] * seeds}}
        if control:
            gains["control"] = {"unseen": list(rng.normal(0, noise, seeds)), "all": [0.0] * seeds}
        rows.append({"task": f"t{i}", "values": values, "seconds": {p: 1.0 for p in L.PREDICTORS},
                     "n_unseen": 20 if i < n - 2 else 3, "gains": gains,
                     "grpo_seconds": [2.0] * seeds, "control_seconds": [], "largest_drops": [0.0] * seeds})
    return {"params": {"min_unseen": 16}, "rows": rows}


def test_analysis_finds_a_planted_effect_and_not_a_planted_null():
    rng = np.random.default_rng(0)
    table = L.Table.from_record(_record(rng, 0.02, n=40))
    assert table.gains.shape == (38, 6)          # the two tasks with 3 unseen prompts are out
    found = L.analyse(table, 199, 0, pooled_gain=table.gain)
    assert found.primary.holds and found.primary.stat > 0.5
    assert -1 < found.primary.lo < found.primary.stat < found.primary.hi < 1
    assert found.reliability > 0.9 and found.ceiling == pytest.approx(np.sqrt(found.reliability))
    assert [t.name for t in found.secondary][-1] == L.I_POOLED
    null = L.analyse(L.Table.from_record(_record(rng, 0.0, n=40)), 199, 0)
    assert not null.primary.holds
    flipped = L.analyse(L.Table.from_record(_record(rng, -0.02, n=40)), 199, 0)
    assert flipped.primary.p > 0.5                 # one-sided: a negative effect is not one


def test_reward_std_alone_explains_nothing_beyond_itself():
    # the gain a monotone function of reward-std, S a noisy copy of it: nothing beyond
    rng = np.random.default_rng(1)
    z = rng.uniform(0, 1, 30)
    stat, p = L.partial_rank_test(z + rng.normal(0, 0.3, 30), np.exp(3 * z), z, 199, 0)
    assert abs(stat) < 0.3 and p > 0.05


def test_holm_family_grows_with_the_control_and_reliability_falls_with_noise():
    rng = np.random.default_rng(2)
    quiet = L.analyse(L.Table.from_record(_record(rng, 0.02, noise=0.001, control=True)), 19, 0)
    assert quiet.secondary[-1].name == L.EXCESS and len(quiet.secondary) == 3
    loud = L.analyse(L.Table.from_record(_record(rng, 0.02, noise=0.2)), 19, 0)
    assert len(loud.secondary) == 2
    assert quiet.reliability > 0.95 > 0.5 > loud.reliability
    assert loud.seeds_for_target > 6 > quiet.seeds_for_target


def test_a_table_needs_four_eligible_tasks():
    rec = _record(np.random.default_rng(3), 0.0, n=5)
    with pytest.raises(ValueError, match="needs 4"):
        L.Table.from_record(rec)


def test_the_committed_design_must_be_the_pilots(tmp_path):
    pilot = tmp_path / "pilot.json"
    pilot.write_text(json.dumps({"design_rule": {"n_grpo_seeds": 8, "control": False}}))
    reg = L.Registration(L.PREREGISTRATION, pilot)
    from vgh_lib.harness.preregistration import file_sha256

    with pytest.raises(ValueError, match="SHA-256"):
        reg.check_design({"pilot_sha256": "0" * 64})
    reg.check_design({"pilot_sha256": file_sha256(pilot)})


def test_load_record_refuses_unknown_stages():
    with pytest.raises(ValueError, match="pilot"):
        L.load_record("final")


def test_pooling_puts_every_records_seeds_side_by_side_per_task():
    rng = np.random.default_rng(4)
    a, b = _record(rng, 0.02, seeds=4), _record(rng, 0.02, seeds=6)
    b["rows"] = b["rows"][::-1]                     # another task order
    pooled = L.pooled_table({"pilot": a, "confirmation": b})
    assert pooled.gains.shape == (22, 10)
    i = list(pooled.task).index("t3")
    row_b = next(r for r in b["rows"] if r["task"] == "t3")
    np.testing.assert_allclose(pooled.gains[i, 4:], row_b["gains"]["grpo"]["unseen"])
    t = L.Table.from_record(b)
    gain = L.pooled_gain(t, {"pilot": a, "confirmation": b})
    assert gain[list(t.task).index("t3")] == pytest.approx(pooled.gain[i])
    other = _record(rng, 0.0, n=8)               # another study's tasks: nothing to pool with
    for r in other["rows"]:
        r["task"] = "other " + r["task"]
    assert L.pooled_gain(t, {"other": other}) is None
    tiny = _record(rng, 0.0, seeds=2)             # the same task names on another model
    tiny["params"] = {**tiny["params"], "model_path": "tiny"}
    with pytest.raises(ValueError, match="different designs"):
        L.pooled_table({"pilot": a, "smoke": tiny})
    assert L.pooled_gain(t, {"pilot": a, "smoke": tiny}) is None


def test_agreement_names_the_verdicts_that_differ():
    rng = np.random.default_rng(5)
    yes = L.analyse(L.Table.from_record(_record(rng, 0.02, n=40)), 99, 0)
    no = L.analyse(L.Table.from_record(_record(rng, 0.0, n=40)), 99, 0)
    assert "every verdict was the same" in L.agreement_text({"confirmation": yes, "replication": yes}, True)
    text = L.agreement_text({"confirmation": yes, "replication": no}, True)
    assert "differed" in text and L.PRIMARY in text
    assert "not committed" in L.agreement_text({"confirmation": yes}, True)
    assert L.seed_text([5, 6, 7, 8]) == "5–8" and L.seed_text([1, 3]) == "1, 3"
    assert L.seed_text([*range(1, 11), *range(21, 27), 30, 31]) == "1–10, 21–26, 30, 31"


def test_interval_text_never_prints_nan():
    t = L.Test("x", 0.5, float("nan"), float("nan"), 0.1)
    assert "nan" not in L.interval_text(t) and "n/a" in L.interval_text(t)


def test_every_figure_draws_and_passes_the_readability_check():
    from vgh_lib.common import plots

    rng = np.random.default_rng(6)
    table = L.Table.from_record(_record(rng, 0.02, n=24))
    res = L.analyse(table, 19, 0)
    for fig in (L.figure_partial(table, res, "test"), L.figure_predictors(res, "test")):
        assert plots.figure_problems(fig) == []


def test_costs_take_the_evaluation_of_p_out_of_the_exact_terms():
    table = L.Table.from_record(_record(np.random.default_rng(7), 0.0))
    table.seconds.update({"S exact": 5.0, "AdamW signal": 7.0, "H": 3.0, "S": 4.0})
    c = L.costs(table)      # a GRPO run: 2 s
    assert c == {"S exact": 1.0, "AdamW signal": 2.0, "S": 2.0, "evaluation of p": 1.5}


def test_the_pooled_spearman_test_is_one_sided_and_bounded():
    rng = np.random.default_rng(8)
    x = rng.normal(size=24)
    up = L.spearman_test(x, x + rng.normal(0, 0.5, 24), "up", 999, 0)
    down = L.spearman_test(x, -x + rng.normal(0, 0.5, 24), "down", 999, 0)
    assert up.p < 0.01 < 0.5 < down.p
    assert -1 < up.lo < up.stat < up.hi < 1
