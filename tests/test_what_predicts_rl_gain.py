"""Notebook 09's design rules and its pre-registration (vgh_lib.experiments.what_predicts_rl_gain)."""

from __future__ import annotations

import numpy as np
import pytest

from vgh_lib.errors import ParameterError
from vgh_lib.experiments import designs
from vgh_lib.experiments import what_predicts_rl_gain as P


def test_the_registered_text_is_unchanged():
    """The page above its end marker is what was committed before the pilot; amendments go
    below the marker."""
    assert P.REGISTRATION.text_sha256() == designs.PREDICTOR_REGISTRATION_SHA256


def test_learning_region_keeps_the_range_and_spreads_the_rest():
    pass1 = [0.0, 0.01, 0.02, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9, 0.95]
    assert P.learning_region(pass1, (0.02, 0.9), 20) == list(range(2, 11))
    assert P.learning_region(pass1, (0.02, 0.9), 3) == [2, 6, 10]
    assert P.learning_region(pass1, (0.5, 0.6), 6) == [7, 8]


def test_lr_rules_are_notebook_05s():
    """One implementation of each rule (common.impact, tested in test_impact.py); fewer
    checkpoints than targets leave the last targets without one instead of failing."""
    assert P.PILOT["collapse_tolerance"] == 0.05
    assert P.lr_checkpoints([0.05, 0.3, 0.45, 0.6, 0.88]) == [1, 2, 4]
    assert P.lr_checkpoints([0.5, 0.5]) == [0, 1]


def test_parameters_are_checked_before_anything_runs():
    with pytest.raises(ParameterError, match="one seed per recipe"):
        P.PredictorParams(recipe_seeds=(1, 2))
    with pytest.raises(ParameterError, match="at least 3 distinct recipes"):
        P.PredictorParams(recipes=("base", "wide"), recipe_seeds=(1, 2))
    with pytest.raises(ParameterError, match="short_seed"):
        P.PredictorParams(short_seed=0)
    with pytest.raises(ParameterError, match="recipes"):
        P.PredictorParams(recipes=("base", "wide", "nope"), recipe_seeds=(1, 2, 3))


def test_recipes_change_what_they_say():
    prm = P.PredictorParams()
    assert prm.pretrain_config("noisy corpus", 5).corpus_clean_fraction == 0.6
    assert prm.pretrain_config("reverse", 5).task == "reverse"
    assert prm.pretrain_config("base", 5).seed == 5
    assert not set(P.CONFIRMATION) & set(P.PILOT_RECIPES)
    assert not set(P.CONFIRMATION_SEEDS) & set(P.PILOT_SEEDS)


def test_simulated_claim_has_power_at_a_large_effect_and_its_size_at_none():
    gen = P.Generator(0.05, 0.85, np.array([-3.0, 4.0, -2.0, 0.0]), 0.3, 0.3,
                      np.array([0.0, 0.4, -0.4, 0.0]), 0.3, 0.005)
    strong = P.simulate_claim(gen, 6, 6, 20, 39, seed=0)
    null = P.simulate_claim(gen, 6, 6, 40, 39, seed=1, beta=0.0)
    assert strong["rate"] >= 0.9
    assert null["rate"] <= 0.2   # 40 datasets at nominal 0.05: P(rate > 0.2) < 0.01
    assert 0.0 <= null["coverage"] <= 1.0 and null["n_sims"] == 40


def test_the_committed_design_names_the_committed_pilot():
    """The notebook's run-time check: the design names the pilot file, which names the text."""
    pilot = P.load_pilot()
    P.check_design(pilot, designs.PREDICTOR_CHOSEN)
    assert P.PredictorParams().grpo_lr == designs.PREDICTOR_CHOSEN["lr"] == pilot["chosen_lr"]
    with pytest.raises(ValueError, match="SHA-256"):
        P.check_design(pilot, {**designs.PREDICTOR_CHOSEN, "pilot_sha256": "0" * 64})


def test_interval_coverage_reports_every_interval_as_a_share():
    """At a strong, clean effect every jackknife interval covers its mean often; the shares
    are proportions of the simulated datasets."""
    gen = P.Generator(0.05, 0.85, np.array([-3.0, 4.0, -2.0, 0.0]), 0.3, 0.3,
                      np.array([0.0, 0.4, -0.4, 0.0]), 0.05, 0.02)
    cov = P.interval_coverage(gen, 6, 6, 20, seed=0)
    assert set(cov) == {"R² of I", "ρ of I", "R² of pass@1", "ρ of pass@1", "ΔR²"}
    assert all(v in {i / 20 for i in range(21)} for v in cov.values())
    assert min(cov.values()) >= 0.7


def _point(recipe, traj, step, rng):
    values = {p: float(rng.uniform(0.01, 1)) for p in P.PREDICTORS}
    return P.PanelPoint(recipe, traj, step, np.zeros(2), np.zeros(2), np.eye(3), [0.0],
                        values, {p: 0.5 for p in P.PREDICTORS})


def _run(traj, step, seed, gain, drop=0.0):
    from vgh_lib.experiments.value_impact import GainRun

    before = np.full(4, 0.2)
    return GainRun(traj, step, "adamw", 3e-4, seed, before, before + gain, [0, 5],
                   [0.5, 0.5 - drop], 2.0)


def test_table_joins_each_checkpoint_with_its_runs_and_the_scores_match_a_direct_fit():
    rng = np.random.default_rng(0)
    points, runs = [], []
    for r, traj in (("a", 1), ("b", 2), ("c", 3)):
        for step in (10, 20, 30, 40):
            points.append(_point(r, traj, step, rng))
            runs += [_run(traj, step, 0, 0.01 * step + traj), _run(traj, step, 1, 0.03 * step + traj,
                                                                      drop=0.1 if step == 40 else 0.0)]
    t = P.build_table(points, runs)
    assert t.gain[0] == pytest.approx(0.02 * 10 + 1)            # the mean over the two seeds
    assert t.gain_se[0] == pytest.approx(0.1)  # SD (ddof 1) of 1.1 and 1.3 is 0.2/√2; over √2 seeds
    assert t.collapsed == 3 and t.cost["I"] == pytest.approx(0.25)
    # the scores are prediction's on the predictor's features, for every recipe held out
    sc = P.score_predictor(t, "I")
    X = np.log(t.x["I"])[:, None]
    assert sc.r2.value == pytest.approx(P.prediction.scores(X, t.gain, t.recipe)["r2"])
    assert sc.rho.df == 2
    inc = P.incremental_value(t, 19, 0)
    base = P.prediction.features(t.x["pass@1"], "cubic")
    assert inc.delta.value == pytest.approx(P.prediction.incremental_r2(base, X, t.gain, t.recipe))
    with pytest.raises(ValueError, match="no GRPO runs"):
        P.build_table(points, runs[2:])
    with pytest.raises(ValueError, match="no checkpoints"):
        P.build_table([], runs)


def test_a_committed_record_reads_back_as_the_same_table():
    """The run on recipe seeds nobody tuned on is committed as a raw record; read back, it is
    the table the run itself would have built (so the chapter analyses the same numbers)."""
    import json

    rng = np.random.default_rng(1)
    points, runs = [], []
    for r, traj in (("a", 1), ("b", 2), ("c", 3)):
        for step in (10, 20, 30):
            points.append(_point(r, traj, step, rng))
            runs += [_run(traj, step, s, rng.normal(), drop=0.2 * (s == 1)) for s in (0, 1, 2)]
    params = P.PredictorParams(grpo_seeds=(0, 1, 2))
    record = json.loads(json.dumps(P.make_record(points, runs, params)))
    want, got = P.build_table(points, runs), P.table_from_record(record)
    np.testing.assert_allclose(got.gain, want.gain, rtol=1e-12)
    np.testing.assert_allclose(got.gain_se, want.gain_se, rtol=1e-12)
    for p in P.PREDICTORS:
        np.testing.assert_allclose(got.x[p], want.x[p])
    assert got.collapsed == want.collapsed == 9
    assert got.grpo_seconds == pytest.approx(want.grpo_seconds)
    assert list(got.recipe) == list(want.recipe)


def test_recipe_and_checkpoint_tables_follow_the_trajectories():
    from types import SimpleNamespace

    params = P.PredictorParams(recipes=("base", "noisy corpus", "one layer"), recipe_seeds=(11, 12, 13))
    cp = lambda step, p1: SimpleNamespace(step=step, metrics={"pass1": p1})  # noqa: E731
    trajectories = {"one layer": [cp(10, 0.1), cp(20, 0.42)], "base": [cp(5, 0.2), cp(9, 0.3)]}
    assert P.recipe_seeds_of(params, trajectories) == [13, 11]      # each recipe's own seed, not the order
    rows = P.recipe_rows(params, trajectories)
    assert rows == [["one layer", "13", "10, 20", "0.10 – 0.42"], ["base", "11", "5, 9", "0.20 – 0.30"]]
    assert len(rows[0]) == len(P.RECIPES_HEADER)
    row = {"recipe": "base", "step": 9, **{p: 0.5 for p in P.PREDICTORS}, "I": 2.5, "gain": 0.031, "gain SE": 0.004}
    (out,) = P.checkpoint_rows(SimpleNamespace(as_rows=lambda: [row]))
    assert out[:3] == ["base", "9", "2.5"] and out[-1] == "+0.031 ± 0.004"
    assert len(out) == len(P.CHECKPOINT_HEADER)
