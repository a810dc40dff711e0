"""Claims declared in the experiment modules (issue 33): the declaration's checks, how a
notebook records them, and each declared threshold against planted results on both sides of it;
the study figures drawn on small real runs pass the book's readability check."""
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from vgh_lib.common import plots  # noqa: E402
from vgh_lib.experiments import actor_update, theorem1  # noqa: E402
from vgh_lib.harness.claims import ClaimSet, ClaimSpec, Measured  # noqa: E402

SPEC = ClaimSpec("x.z", "{system}: a z-score", "<=", 3.0, fails_if="the z-score exceeds 3")


def test_a_declaration_must_say_what_would_fail_it_and_use_known_comparisons():
    with pytest.raises(ValueError, match="fails_if"):
        ClaimSpec("x", "s", "<=", 1.0)
    with pytest.raises(ValueError, match="op must be one of"):
        ClaimSpec("x", "s", "<", 1.0, fails_if="f")
    with pytest.raises(ValueError, match="kind must be one of"):
        ClaimSpec("x", "s", "<=", 1.0, kind="hope", fails_if="f")


def test_add_declared_records_every_declared_claim_and_nothing_else():
    claims = ClaimSet("nb", "default", {})
    with pytest.raises(ValueError, match="missing \\['x.z'\\]"):
        claims.add_declared([SPEC], {})
    with pytest.raises(ValueError, match="not declared \\['y'\\]"):
        claims.add_declared([SPEC], {"x.z": Measured(1.0), "y": Measured(2.0)})
    claims.add_declared([SPEC], {"x.z": Measured(3.5, fields={"system": "tanh"})})
    (c,) = claims.claims
    assert (c.id, c.statement, c.value, c.passed, c.fails_if) == (
        "x.z", "tanh: a z-score", 3.5, False, "the z-score exceeds 3")


def test_require_ci_needs_the_whole_interval():
    spec = ClaimSpec("r", "ratio", ">=", 1.0, kind="empirical", require_ci=True, fails_if="f")
    for ci, passed in (((1.1, 1.9), True), ((0.9, 2.1), False)):
        claims = ClaimSet("nb", "default", {})
        claims.add_declared([spec], {"r": Measured(1.5, ci=ci)})
        assert claims.claims[0].passed is passed


# ------------------------------------------------- each declared threshold, on both sides
def _thm1_result(lqr_z=1.0, slope=-0.5, slope_se=0.02, nonlinear_z=1.0, adjoint=1e-14):
    return SimpleNamespace(lqr=SimpleNamespace(z=lqr_z),
                           convergence=SimpleNamespace(slope=slope, slope_se=slope_se),
                           nonlinear=SimpleNamespace(z=nonlinear_z),
                           steps=SimpleNamespace(adjoint_max_rel=adjoint))


def _passed(module, result, params):
    claims = ClaimSet("nb", "default", {})
    claims.add_declared(module.CLAIMS, module.claim_values(result, params))
    return {c.id: c.passed for c in claims.claims}


@pytest.mark.parametrize("change, failed", [
    ({}, set()),
    ({"lqr_z": 3.1}, {"thm1.lqr.z"}),
    ({"slope": -0.2}, {"thm1.lqr.rate_slope"}),       # a bias flattens the rate
    ({"slope": -0.8}, {"thm1.lqr.rate_slope"}),
    ({"nonlinear_z": 3.01}, {"thm1.nonlinear.z"}),
    ({"adjoint": 1e-8}, {"thm1.lqr.adjoint_autograd"}),
])
def test_theorem1_claims_fail_exactly_where_declared(change, failed):
    params = theorem1.Theorem1Params()
    passed = _passed(theorem1, _thm1_result(**change), params)
    assert {k for k, ok in passed.items() if not ok} == failed
    assert set(passed) == {c.id for c in theorem1.CLAIMS}


def _actor_result(ppo=1e-14, sf_pd=1.0, pd=1.0, sf=1.0, grpo=0.99, ratio=5.0, ratio_se=0.5, nl=1.0):
    E = actor_update.Estimator
    return SimpleNamespace(ppo=SimpleNamespace(identity_rel=ppo), sf_pd=SimpleNamespace(z=sf_pd),
                           z={E.PD: pd, E.SF_LOO: sf}, grpo=SimpleNamespace(main_cosine=grpo),
                           variance_ratio=SimpleNamespace(ratio=ratio, se=ratio_se),
                           nonlinear=SimpleNamespace(sf_pd=SimpleNamespace(z=nl)))


@pytest.mark.parametrize("change, failed", [
    ({}, set()),
    ({"ppo": 1e-6}, {"prop.ppo_equals_sf"}),
    ({"sf_pd": 3.2}, {"prop.sf_pd_agree"}),
    ({"pd": 3.2}, {"prop.pd.z"}),
    ({"sf": 3.2}, {"prop.sf.z"}),
    ({"grpo": 0.97}, {"prop.grpo.cosine"}),
    ({"ratio": 1.5, "ratio_se": 0.3}, {"prop.variance_ratio"}),   # its interval reaches below 1
    ({"nl": 4.0}, {"prop.nonlinear.sf_pd_agree"}),
])
def test_actor_update_claims_fail_exactly_where_declared(change, failed):
    params = actor_update.ActorUpdateParams()
    passed = _passed(actor_update, _actor_result(**change), params)
    assert {k for k, ok in passed.items() if not ok} == failed


# ------------------------------------------------------------------------- the figures
@pytest.fixture(scope="module")
def small_runs():
    p1 = theorem1.Theorem1Params(n_state=2, n_action=1, horizon=4, n_rollouts=2_000)
    r1 = theorem1.run(seed=0, n_state=2, n_action=1, horizon=4, sigma=0.5, n_rollouts=2_000,
                      system="tanh", n_step_rollouts=500, n_sizes=4, fd_batches=4)
    p2 = actor_update.ActorUpdateParams(n_state=2, n_action=1, horizon=4, n_rollouts=2_048,
                                        group_size=8, n_fd_rollouts=1_000)
    r2 = actor_update.run_study(p2)
    return p1, r1, p2, r2


def test_every_study_figure_draws_and_reads(small_runs):
    p1, r1, p2, r2 = small_runs
    figures = [theorem1.figure_convergence(r1), theorem1.figure_components(r1, p1),
               theorem1.figure_nonlinear(r1, p1), actor_update.figure_estimators(r2, p2),
               actor_update.figure_bias(r2, p2), actor_update.figure_ppo_grpo(r2),
               actor_update.figure_nonlinear(r2, p2)]
    for n, fig in enumerate(figures):
        plots.finish(fig, f"test{n}")
        assert plots.figure_problems(fig) == [], n
    assert np.isfinite(list(actor_update.glued_numbers(r2, p2).values())).all()
    assert "GRPO (G=8)" in actor_update.labels(p2).values()


def test_trajectory_claims_fail_exactly_where_declared():
    from vgh_lib.experiments import pretraining_trajectory

    def passed(diff, gain, ci):
        claims = ClaimSet("nb", "default", {})
        mid = SimpleNamespace(gain=gain, gain_ci=ci, runs=[1, 2, 3])
        claims.add_declared(pretraining_trajectory.CLAIMS, pretraining_trajectory.claim_values(diff, mid))
        return {c.id for c in claims.claims if not c.passed}, claims.claims[1].statement

    assert passed(0.0, 0.05, (0.01, 0.09)) == (set(), passed(0.0, 0.05, (0.01, 0.09))[1])
    assert "mean over 3 seeds" in passed(0.0, 0.05, (0.01, 0.09))[1]
    assert passed(1e-7, 0.05, (0.01, 0.09))[0] == {"traj.reload_logits"}   # any logit differs
    assert passed(0.0, 0.05, (-0.01, 0.09))[0] == {"grpo.mid_checkpoint_gain"}  # interval reaches 0


@pytest.mark.parametrize("change, failed", [
    ({}, set()),
    ({"z": 3.5}, {"thm2.identity.z"}),
    ({"cov_hi": 0.7}, {"thm2.r.coverage"}),
    ({"ratio": 5.0}, {"thm2.r.ratio"}),
    ({"ratio": 0.2}, {"thm2.r.ratio"}),
    ({"misses": 2}, {"thm2.fidelity.misses"}),          # 2 of 20 cells: 10 % > 5 %
    ({"last": 0.4}, {"thm2.attention.last_share"}),
])
def test_theorem2_claims_fail_exactly_where_declared(change, failed):
    from vgh_lib.experiments import transformer_costates

    v = {"z": 1.0, "cov_hi": 0.95, "ratio": 1.5, "misses": 1, "last": 0.7, **change}
    fid = [SimpleNamespace(z=[5.0 if i < v["misses"] else 0.1]) for i in range(20)]
    identity = SimpleNamespace(z=v["z"])
    rb = SimpleNamespace(coverage_ci=(0.5, v["cov_hi"]), median_ratio=v["ratio"])
    claims = ClaimSet("nb", "default", {})
    claims.add_declared(transformer_costates.CLAIMS, transformer_costates.claim_values(identity, rb, fid, v["last"]))
    assert {c.id for c in claims.claims if not c.passed} == failed


def _failed(specs, measured):
    claims = ClaimSet("nb", "default", {})
    claims.add_declared(specs, measured)
    return {c.id for c in claims.claims if not c.passed}


def test_real_lm_thresholds_are_the_bonferroni_critical_values():
    from vgh_lib.experiments import real_lm

    specs = {c.id: c for c in real_lm.claims(6, 8)}
    assert specs["real.identity.t_parallel"].threshold == real_lm.t_crit(6, 8)
    assert specs["real.identity.bias_z"].threshold == real_lm.z_crit(6)
    assert specs["real.value.mc_z"].threshold == real_lm.z2_crit(6)
    assert real_lm.z_crit(12) > real_lm.z_crit(6)          # more prompts, a stricter family


@pytest.mark.parametrize("change, failed", [
    ({}, set()),
    ({"p_london": 0.5}, {"real.capitals.paris_vs_london"}),
    ({"task_means": {"a": 0.5, "b": 0.3}}, {"real.suite.spread"}),
    ({"gap_p": 0.2}, {"real.relaxed.gap_r.p"}),
    ({"share_mean": 0.4}, {"real.attention_share"}),
    ({"fidelity": SimpleNamespace(largest=0.85)}, {"real.fidelity.largest_G"}),
])
def test_real_lm_claims_fail_exactly_where_declared(change, failed, monkeypatch):
    from vgh_lib.experiments import real_lm

    for name in ("worst_abs_mc_z", "worst_abs_t_parallel", "worst_bias_z"):
        monkeypatch.setattr(real_lm, name, lambda *_: 0.5)
    values = {"p_paris": 0.4, "p_london": 0.01, "task_means": {"a": 0.9, "b": 0.1}, "mc_z": None,
              "results": None, "gap_p": 0.01, "share_mean": 0.7,
              "fidelity": SimpleNamespace(largest=0.95), **change}
    assert _failed(real_lm.claims(6, 8), real_lm.claim_values(**values)) == failed


def test_probe_and_real_lm_impact_claims():
    from vgh_lib.experiments import probe, real_lm_impact

    assert _failed(probe.CLAIMS, probe.claim_values({"I": np.array([[0.8, np.nan, 0.7]])})) == set()
    assert _failed(probe.CLAIMS, probe.claim_values({"I": np.array([[0.8, 0.5]])})) == {
        "s7.probe_ranks_like_reference"}                           # mean 0.65 < 0.7
    res = SimpleNamespace(pooled={"I": 0.7}, pooled_ci={"I": (0.3, 0.9)}, p_value=0.01)
    assert _failed(real_lm_impact.CLAIMS, real_lm_impact.claim_values(res, [], (0.05, 0.01, 0.09))) == set()
    assert _failed(real_lm_impact.CLAIMS, real_lm_impact.claim_values(res, ["run"], (0.05, -0.01, 0.09))) == {
        "r5.collapsed_runs", "r5.mean_gain"}


def test_value_impact_declares_one_claim_per_arm_trajectory_and_mid_checkpoint():
    from vgh_lib.experiments import value_impact as V

    params = V.ValueImpactParams()
    seeds = params.confirmation_seeds
    res = SimpleNamespace(pooled={"I": 0.7}, pooled_ci={"I": (0.5, 0.8)}, p_value=0.01,
                          spearman={"I": [0.7] * len(seeds)}, spearman_ci={"I": [(0.5, 0.8)] * len(seeds)})
    mid = {s: SimpleNamespace(gain=0.05, ci=(0.01, 0.09), step=100) for s in seeds}
    results = {opt: res for opt in V.OPTIMIZERS}
    specs = V.claims(params)
    assert len(specs) == len(V.OPTIMIZERS) * (3 + len(seeds)) + len(seeds)
    assert _failed(specs, V.claim_values(params, results, {o: [] for o in V.OPTIMIZERS}, mid)) == set()
    bad_mid = {**mid, seeds[0]: SimpleNamespace(gain=0.05, ci=(-0.01, 0.09), step=100)}
    claims = ClaimSet("nb", "default", {})
    claims.add_declared(specs, V.claim_values(params, results, {"adamw": [], "sgd": ["run"]}, bad_mid))
    assert V.failed_by_arm(claims.claims) == {"adamw": [f"grpo.mid_checkpoint_gain.traj{seeds[0]}"],
                                              "sgd": ["s5.sgd.collapsed_runs"]}
    assert "(step 100)" in claims.claims[-1].statement


def test_registered_studies_declare_their_claims_with_the_registered_alpha():
    from vgh_lib.experiments import gradient_factor as GF
    from vgh_lib.experiments import lm_gradient_factor as LG
    from vgh_lib.experiments import what_predicts_rl_gain as P
    from vgh_lib.experiments import real_lm_task_suite as T
    from vgh_lib.harness.verdicts import Test

    assert {c.threshold for c in (*P.CLAIMS[1:3], *T.CLAIMS[:3], *GF.CLAIMS, LG.PRIMARY_CLAIM)} == {0.05}
    # 09: the incremental claims' failures read "not shown" when the design was uninformative
    iv = SimpleNamespace(value=0.02, lo=-0.01, hi=0.05)
    res = SimpleNamespace(incremental=SimpleNamespace(delta=iv, p=0.2), pairs=SimpleNamespace(p=0.01))
    claims = ClaimSet("nb", "default", {})
    claims.add_declared(P.CLAIMS, P.claim_values(res, SimpleNamespace(collapsed=0), False))
    assert [(c.id, c.passed, c.not_shown) for c in claims.claims] == [
        ("p9.incremental.delta_r2", False, True), ("p9.incremental.p", False, True),
        ("p9.pairs.p", True, False), ("p9.collapsed_runs", True, False)]
    # 11 and 12: one claim per secondary test of the analysis, statistics in the statements
    primary = Test("primary", 0.3, 0.1, 0.5, 0.01, holds=True)
    secondary = [Test(n, 0.1, -0.1, 0.3, 0.2, p_holm=0.4) for n in
                 [f"{n} beyond {LG.BASELINE}" for n in LG.SECONDARY]]
    a12 = SimpleNamespace(primary=primary, secondary=secondary)
    specs = LG.claims(a12)
    assert [c.id for c in specs] == ["p12.primary.p", "p12.alignment.p_holm", "p12.adamw.p_holm"]
    claims = ClaimSet("nb", "default", {})
    claims.add_declared(specs, LG.claim_values(a12, True))
    assert [c.passed for c in claims.claims] == [True, False, False]
    assert "(partial r +0.30 [+0.10, +0.50])" in claims.claims[0].statement
    a11 = SimpleNamespace(primary=Test("p", 0.0, -0.3, 0.3, 0.6), secondary=secondary + secondary[:1])
    claims = ClaimSet("nb", "default", {})
    claims.add_declared(GF.CLAIMS, GF.claim_values(a11, False))
    assert claims.claims[0].not_shown and not claims.claims[0].passed


def test_task_suite_claims():
    from vgh_lib.experiments import real_lm_task_suite as T

    def outcome(p, rho, n, beaten=()):
        a = SimpleNamespace(correlations={"I": SimpleNamespace(p=p, value=rho)}, tasks=list(range(n)))
        a.beaten_by = list(beaten)
        return a

    res = {"unseen": outcome(0.01, 0.5, 24), "all": outcome(0.2, 0.2, 29), "excess": outcome(0.03, 0.4, 24)}
    claims = ClaimSet("nb", "default", {})
    claims.add_declared(T.CLAIMS, T.claim_values(res))
    assert [c.passed for c in claims.claims] == [True, False, True, True]
    assert "over 24 tasks is positive (ρ = +0.50)" in claims.claims[0].statement
    res["unseen"].beaten_by = ["reward std"]
    assert _failed(T.CLAIMS, T.claim_values(res)) == {"p10.all.p", "p10.not_beaten"}


def test_no_notebook_declares_a_claim_of_its_own():
    """Claims live in the experiment modules, where their thresholds are under test: a notebook
    only records them (``claims.add_declared``)."""
    import json
    from pathlib import Path

    notebooks = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
    inline = [p.name for p in notebooks for c in json.loads(p.read_text())["cells"]
              if c["cell_type"] == "code" and "claims.add(" in "".join(c["source"])]
    assert notebooks and not inline, inline
    recorded = [p.name for p in notebooks if "claims.add_declared(" in p.read_text()]
    assert len(recorded) == len(notebooks)
