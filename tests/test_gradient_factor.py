"""Notebook 11's study (vgh_lib.experiments.gradient_factor): its registration, its rules, its
measurements at a checkpoint and its analysis."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from vgh_lib.errors import ParameterError
from vgh_lib.experiments import designs
from vgh_lib.experiments import gradient_factor as G


def test_the_registered_text_is_unchanged_and_the_simulation_names_it():
    assert G.REGISTRATION.text_sha256() == designs.GRADIENT_REGISTRATION_SHA256
    sim = json.loads(G.SIMULATION_FILE.read_text())
    assert sim["preregistration_sha256"] == designs.GRADIENT_REGISTRATION_SHA256
    # a size far below 0.05 would be a rule that cannot pass
    for key in ("size", "size_strong_recipe_effect"):
        assert abs(sim[key]["rate"] - 0.05) < 4 * np.sqrt(0.05 * 0.95 / sim[key]["n_sims"])


def test_seeds_never_overlap_and_parameters_are_checked():
    assert not set(G.PILOT_SEEDS) & set(G.CONFIRMATION_SEEDS)
    assert not set(G.REPLICATION_SEEDS) & (set(G.PILOT_SEEDS) | set(G.CONFIRMATION_SEEDS))
    with pytest.raises(ParameterError, match="grpo_seeds"):
        G.GradientParams(grpo_seeds=(0,))
    with pytest.raises(ParameterError, match="one seed per recipe"):
        G.GradientParams(recipe_seeds=(1, 2))
    d = G.GradientParams(grpo_steps=7, grpo_lr=1e-3).design()
    assert (d.grpo_steps, d.grpo_lr, d.recipes) == (7, 1e-3, G.RECIPES)


def test_seed_rule_takes_the_smallest_choice_that_is_reliable_and_affordable():
    # reliability 0.8 at 6 seeds: 6 suffices
    assert G.choose_seeds(0.8, 6, 1.0, 36, 2)["n_grpo_seeds"] == 6
    # 0.7 at 6 → 0.78 at 9: neither reaches 0.8, the largest that fits
    assert G.choose_seeds(0.7, 6, 1.0, 36, 2)["n_grpo_seeds"] == 9
    # 0.75 at 6 → 0.818 at 9
    out = G.choose_seeds(0.75, 6, 1.0, 36, 2)
    assert out["n_grpo_seeds"] == 9 and out["projected_reliability"]["9"] == pytest.approx(0.8182, abs=1e-4)
    # 9 seeds do not fit 600 s at 3 s a run (9 × 36 × 3 / 2 = 486 s fits; 5 s does not)
    assert G.choose_seeds(0.75, 6, 5.0, 36, 2)["n_grpo_seeds"] == 6


def test_alignment_scale_is_signed_and_log_like():
    a = np.array([-4.0, -1.0, 1.0, 2.0, 100.0])
    s = G.scale("alignment", a)
    assert np.all(np.diff(s) > 0) and s[0] < 0
    assert s[-1] == pytest.approx(np.log(2 * 100 / 2), rel=1e-3)   # asinh(u) ≈ log 2u
    np.testing.assert_allclose(G.scale("S exact", [1.0, np.e]), [0.0, 1.0])


def _record(rng, beta: float, n_recipes=6, per=6, seeds=6, noise=0.01):
    rows = []
    for r in range(n_recipes):
        z = rng.uniform(0.1, 0.4, per)
        logs = 2 * z + rng.normal(0, 0.5) + rng.normal(0, 0.5, per)
        within = logs - logs.mean()
        for i in range(per):
            truth = 0.5 * z[i] + beta * within[i]
            values = {p: float(rng.uniform(0.1, 1)) for p in G.PREDICTORS}
            values.update({"reward std": float(z[i]), "S exact": float(np.exp(logs[i])),
                           "I exact": float(np.exp(logs[i])), "I": float(np.exp(logs[i]) * rng.uniform(0.2, 5))})
            rows.append({"recipe": f"r{r}", "trajectory": r, "step": i + 1, "values": values,
                         "seconds": {p: 1.0 for p in G.PREDICTORS},
                         "gains": list(truth + rng.normal(0, noise, seeds)),
                         "largest_drops": [0.0] * seeds, "grpo_seconds": [2.0] * seeds})
    return {"rows": rows}


def test_analysis_finds_a_planted_effect_and_not_a_planted_null():
    rng = np.random.default_rng(0)
    found = G.analyse(G.Table.from_record(_record(rng, 0.05)), 199, 0)
    assert found.primary.holds and found.primary.stat > 0.5
    assert -1 < found.primary.lo < found.primary.stat < found.primary.hi < 1
    assert found.reliability > 0.9 and found.ceiling == pytest.approx(np.sqrt(found.reliability))
    null = G.analyse(G.Table.from_record(_record(rng, 0.0)), 199, 0)
    assert not null.primary.holds
    # a flipped effect is not read as one (one-sided)
    flipped = G.analyse(G.Table.from_record(_record(rng, -0.05)), 199, 0)
    assert flipped.primary.p > 0.5
    # exact I carries the planted effect, noisy I is it times noise: exact wins (on a panel
    # large enough for the within-recipe rank test to have power; 36 checkpoints give ~0.5)
    big = G.analyse(G.Table.from_record(_record(rng, 0.05, n_recipes=10, per=10)), 199, 0)
    ex = big.secondary[-1]
    assert ex.stat > 0 and ex.p < 0.05 and ex.lo <= ex.stat <= ex.hi
    # and with the two swapped the same test finds nothing
    swapped = G.Table.from_record(_record(rng, 0.05, n_recipes=10, per=10))
    swapped.x["I exact"], swapped.x["I"] = swapped.x["I"], swapped.x["I exact"]
    assert G.analyse(swapped, 199, 0).secondary[-1].p > 0.5
    for sc in found.scores.values():
        assert -1 <= sc.rank_oos.lo <= sc.rank_oos.hi <= 1 and sc.r2_oos.hi <= 1


def test_reliability_falls_with_noise_in_the_gains():
    rng = np.random.default_rng(1)
    quiet = G.analyse(G.Table.from_record(_record(rng, 0.05, noise=0.001)), 19, 0)
    loud = G.analyse(G.Table.from_record(_record(rng, 0.05, noise=0.2)), 19, 0)
    assert quiet.reliability > 0.95 > 0.5 > loud.reliability
    assert loud.seeds_for_target > 6 > quiet.seeds_for_target


def test_pooled_tables_keep_each_records_recipes_apart():
    rng = np.random.default_rng(2)
    a, b = _record(rng, 0.05, seeds=6), _record(rng, 0.05, seeds=9)
    t = G.Table.pooled({"one": a, "two": b})
    assert t.gains.shape == (72, 6) and len(np.unique(t.recipe)) == 12
    np.testing.assert_allclose(t.gains[36:], np.array([r["gains"][:6] for r in b["rows"]]))


def test_generator_fit_recovers_its_parameters():
    gen = G.RankGenerator(0.1, 0.5, (0.0, 4.0), 0.5, 0.4, (0.1, 0.5), 0.03, 0.02, 0.01)
    x, y, z, recipe = gen.draw(200, 6, np.random.default_rng(3))
    fit = G.fit_generator(z, x, y, recipe)
    assert fit.beta == pytest.approx(0.03, rel=0.05)
    assert fit.x_coef[1] == pytest.approx(4.0, rel=0.05)
    assert fit.sd_x_within == pytest.approx(0.4, rel=0.05)
    assert fit.sd_noise == pytest.approx(0.01, rel=0.1)
    assert G.RankGenerator.from_dict(json.loads(json.dumps(fit.as_dict()))) == fit


@pytest.fixture(scope="module")
def checkpoint():
    """A smoke-size trajectory of the base recipe and its last checkpoint."""
    prm = G.GradientParams(recipes=("base", "wide", "one layer"), recipe_seeds=(11, 12, 13),
                           pretrain_steps=60, n_checkpoints=3, n_eval=20, eval_samples=4, k=2,
                           pass1_lo=0.0, pass1_hi=1.0, max_checkpoints=2, jobs=1)
    cfg = prm.design().pretrain_config("base", 11)
    from vgh_lib.tiny.pretrain import pretrain

    return prm, cfg, pretrain(cfg, progress=False)[-1]


def test_a_checkpoints_gradient_terms_are_the_library_signal(checkpoint):
    import torch

    from vgh_lib.common.exact_signal import exact_signal
    from vgh_lib.tiny.models import load_local
    from vgh_lib.tiny.sampling import answer_logprob, encode_prompts

    prm, cfg, cp = checkpoint
    job = G.PointJob("base", str(cp.path), cp.step, cfg, 3, 4, 3, 4, 4, 1.0, 12, 2, 8, 5)
    pt = G.run_point(job)
    v = pt.values
    assert v["S exact"] ** 2 == pytest.approx(v["self term"] + v["alignment"], rel=1e-9)
    assert v["I exact"] == pytest.approx(v["S exact"] * v["H"], rel=1e-12)
    assert v["AdamW signal"] > 0 and all(pt.seconds[p] >= 0 for p in G.PREDICTORS)
    # the same S from the library directly, on the same 12 factor prompts
    model, tok = load_local(cp.path)
    train, _ = cfg.task_obj().split()
    prompts, answers = encode_prompts(tok, train[-12:], "cpu")
    params = [p for p in model.parameters() if p.requires_grad]
    sig, _ = exact_signal(lambda i: answer_logprob(model, prompts[i:i + 1], answers[i:i + 1], 1.0)[0],
                          params, 12, 4)
    assert v["S exact"] == pytest.approx(sig.S, rel=1e-6)
    assert torch.get_num_threads() >= 1


def test_a_record_needs_every_grpo_seed_of_every_checkpoint():
    prm = G.GradientParams(grpo_seeds=(0, 1))
    pt = G.Point("base", 11, 5, {p: 1.0 for p in G.PREDICTORS}, {p: 0.0 for p in G.PREDICTORS})

    @dataclasses.dataclass
    class Run:
        trajectory: int = 11
        step: int = 5
        seed: int = 0
        gain: float = 0.1
        largest_drop: float = 0.0
        seconds: float = 1.0

    rec = G.make_record(prm, [pt], [Run(seed=0), Run(seed=1, gain=0.3)], 1.0)
    assert rec["rows"][0]["gains"] == [0.1, 0.3]
    with pytest.raises(ValueError, match="GRPO seeds"):
        G.make_record(prm, [pt], [Run(seed=0)], 1.0)


def test_load_record_refuses_unknown_stages():
    with pytest.raises(ValueError, match="pilot"):
        G.load_record("final")


def test_simulation_rows_show_the_registered_simulation_and_the_pilot():
    sim, pilot = G.load_simulation(), G.load_pilot()
    rows = G.simulation_rows(sim, pilot)
    assert len(rows) == 6 and all(len(r) == len(G.SIMULATION_COLUMNS) for r in rows)
    assert rows[0][1] == f"{sim['size']['rate']:.3f} ± {sim['size']['se']:.3f}"
    assert rows[-1][1] == f"{pilot['power']['rate']:.3f}"
