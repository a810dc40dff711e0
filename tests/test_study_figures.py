"""The study figures and tables that moved out of notebooks 09 and 10: each draws on small
synthetic results and passes the book's readability check (plots.figure_problems)."""
import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from vgh_lib.common import impact, plots, prediction  # noqa: E402
from vgh_lib.experiments import what_predicts_rl_gain as P  # noqa: E402
from vgh_lib.experiments import real_lm_task_suite as T  # noqa: E402
from vgh_lib.lm import suite  # noqa: E402



@pytest.fixture(autouse=True)
def book_theme():
    """The book's theme, as every notebook sets it (the sizes are checked under it); the other
    test modules keep matplotlib's defaults."""
    with matplotlib.rc_context():
        plots.set_theme()
        yield


def _iv(value, lo, hi):
    return prediction.Interval(value, 0.1, lo, hi, 5)


def _analysis_09():
    scores = {n: P.Score(_iv(0.5 - 0.1 * i, -40.0 if i == 0 else 0.1 - 0.1 * i, 0.9),
                         _iv(0.3, -0.2, 0.7)) for i, n in enumerate(P.PREDICTORS)}
    scores[P.PREDICTORS[-1]] = P.Score(_iv(-2.5, -9.0, -1.2), _iv(0.3, -0.2, 0.7))  # below the floor
    return P.Analysis(scores, None, None)


def _laid_out(fig):
    plots.finish(fig, "test")
    return plots.figure_problems(fig)


def test_09_panel_figure_and_table():
    res = _analysis_09()
    cost = {n: 0.01 * (i + 1) for i, n in enumerate(P.PREDICTORS)}
    assert _laid_out(P.panel_figure(res, cost, "test")) == []
    rows = P.panel_rows(res, cost)
    assert [r[0] for r in rows] == P.panel_order(res) == list(P.PREDICTORS)   # best R² first
    assert rows[-1][1] == "-2.50 [< -1, -1.20]"
    assert rows[0][1] == "+0.50 [< -1, +0.90]"       # an R² interval's far lower end is floored
    assert rows[1][1] == "+0.40 [+0.00, +0.90]"
    assert len(P.PANEL_HEADER) == len(rows[0])
    assert "ρ out of recipe" in P.PANEL_HEADER[2]     # the table and the figure name it alike


def test_09_pilot_figure_from_the_committed_pilot():
    pilot = json.loads(P.PILOT_FILE.read_text())
    fig = P.pilot_figure(pilot)
    assert _laid_out(fig) == []
    assert fig.axes[0].get_legend() is None           # one key, in a panel of its own
    assert len(fig.axes[-1].get_legend().get_texts()) == len(P.PILOT["lrs"]) + 3 + 1


class _Panel:
    def __init__(self, task, impact):
        self.task, self.impact = task, impact

    def value(self, name):
        assert name == "I"
        return self.impact


def _suite_results(n_tasks=24, outcomes=("unseen", "excess")):
    rng = np.random.default_rng(0)
    tasks = list(suite.SUITE_TASKS[:n_tasks])
    panels = [_Panel(t, float(np.exp(rng.normal(-3, 1)))) for t in tasks]

    def one(outcome):
        gains = [T.TaskGain(t, m, 0.02, m - 0.04, m + 0.04) for t, m in zip(tasks, rng.normal(0.05, 0.05, n_tasks))]
        corr = {n: impact.RankCorrelation(0.1 * (i - 3), -0.3, 0.4, 0.3, n_tasks) for i, n in enumerate(T.PANEL)}
        return T.OutcomeAnalysis(outcome, tasks, gains, 10, corr,
                                 {n: (0.1, -0.2, 0.3) for n in T.PANEL if n != "I"})

    return {o: one(o) for o in outcomes}, panels


@pytest.mark.parametrize("outcomes", [("unseen", "excess"), ("unseen",)])
def test_10_impact_figure_labels_every_task(outcomes):
    res, panels = _suite_results(outcomes=outcomes)
    fig = T.impact_figure(res, panels)
    assert _laid_out(fig) == []
    assert len(fig.axes) == len(outcomes)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert set(res["unseen"].tasks) <= texts


def test_10_panel_rows_rank_by_size_and_mark_missing_outcomes():
    res, panels = _suite_results(outcomes=("unseen",))
    order = T.panel_order(res["unseen"])
    sizes = [abs(res["unseen"].correlations[n].value) for n in order]
    assert sizes == sorted(sizes, reverse=True)

    class _Run:
        arm, seconds = "grpo", 2.0
    for p in panels:
        p.short_seconds = 1.0
        p.panel = type("Panel", (), {"cost": {n: 1.0 for n in T.PANEL}})()
    rows = T.panel_rows(res, panels, [_Run()])
    assert all(r[3] == "—" and r[4] == "—" for r in rows)   # 'all' and 'excess' not analysed
    assert [r[5] for r in rows if r[0] == "I"] == ["—"]
    assert len(rows[0]) == len(T.PANEL_TABLE_HEADERS)


def test_05_pilot_and_health_figures_on_synthetic_runs():
    from types import SimpleNamespace

    from vgh_lib.experiments import value_impact as V

    params = V.ValueImpactParams()
    cps = [SimpleNamespace(step=s) for s in (100, 300, 1000)]
    rng = np.random.default_rng(0)
    runs = [SimpleNamespace(optimizer=o, step=c.step, lr=lr, trajectory=params.confirmation_seeds[i % 2],
                            probe_steps=list(range(0, 21, 5)),
                            probe_value=list(0.3 + np.cumsum(rng.normal(0.01, 0.02, 5))))
            for o in V.OPTIMIZERS for c in cps for i, lr in enumerate((1e-3, 3e-4, 1e-4))]
    chosen = {"adamw_lr": 3e-4, "sgd_lr": 1e-3}
    for fig in (V.figure_pilot(cps, runs, chosen, params), V.figure_health(runs, params)):
        assert _laid_out(fig) == []


def test_05_pilot_glue_says_what_ran_or_that_nothing_did():
    from types import SimpleNamespace

    from vgh_lib.experiments import designs
    from vgh_lib.experiments import value_impact as V

    texts = V.pilot_texts(None)
    assert set(texts.values()) - {V.NOT_RERUN} == {texts["s5.pilot.same"]} and V.pilot_numbers(None) == {}
    assert [r[2] for r in V.pilot_rows(None)] == ["not rerun (pilot=False)"] * len(designs.PILOT_CHOSEN)
    chosen = dict(designs.PILOT_CHOSEN)
    runs = [SimpleNamespace(optimizer="adamw", lr=1e-3, step=s, largest_drop=d) for s, d in ((10, 0.02), (30, 0.09))]
    pilot = SimpleNamespace(chosen=chosen, same={k: k != "sgd_lr" for k in chosen}, runs=runs,
                            checkpoints=[SimpleNamespace(step=10), SimpleNamespace(step=30)], seconds_per_step=0.05)
    texts = V.pilot_texts(pilot)
    assert texts["s5.pilot.checkpoints"] == "10, 30" and texts["s5.pilot.adamw_1e-3_step"] == "30"
    assert "in sgd_lr (the confirmation keeps the committed design)" in texts["s5.pilot.same"]
    assert V.pilot_numbers(pilot) == {"s5.pilot.seconds_per_step": 0.05, "s5.pilot.adamw_1e-3_drop": 0.09}
    assert {k for k in texts} | set(V.pilot_numbers(pilot)) == set(V.pilot_texts(None))  # the same keys


def test_09_run_rows_and_verdicts():
    from types import SimpleNamespace

    inc = SimpleNamespace(holds=False, delta=SimpleNamespace(value=0.01, lo=-0.02, hi=0.04), p=0.3)
    assert P.incremental_verdict(inc, False, short=True) == "is not shown to add to stage (the design could not show it)"
    assert P.incremental_verdict(SimpleNamespace(holds=True), True).startswith("adds to stage: ")
    res = SimpleNamespace(incremental=inc, pairs=SimpleNamespace(agree=5, n=8, p=0.36), winner="H")
    row = P.run_row("run", SimpleNamespace(gain=np.zeros(36)), res, "v")
    assert row == ["run", "36", "+0.010 [-0.020, +0.040]", "0.3", "v", "5 of 8, p = 0.36", "H"]
    assert len(row) == len(P.RUNS_HEADER)


# ------------------------------------ the other studies' figures, on small synthetic results
def _curve(rng, n=5):
    return list(range(0, 5 * n, 5)), list(0.3 + np.cumsum(rng.normal(0.0, 0.02, n)))


def test_08_figures_on_synthetic_results():
    from types import SimpleNamespace

    from vgh_lib.experiments import real_lm_impact as R

    rng = np.random.default_rng(1)
    params = R.RealLMImpactParams()
    runs = [SimpleNamespace(task=t, lr=lr, probe_steps=_curve(rng)[0], probe_value=_curve(rng)[1])
            for t in params.tasks for lr in R.PILOT["lrs"]]
    names = list(params.tasks[:3])
    n = len(params.tasks)
    pred = {"I": np.exp(rng.normal(-3, 1, n)), "pass@1": rng.uniform(0, 1, n)}
    gain = rng.normal(0.05, 0.03, n)
    res = SimpleNamespace(gain=[gain], gain_ci=[np.stack([gain - 0.02, gain + 0.02], axis=1)],
                          spearman={"I": [0.4], "1 − pass@1": [0.2]}, p_value=0.1,
                          pooled={"I": 0.4, "S": 0.2, "H": 0.1}, pooled_ci={k: (-0.2, 0.8) for k in "ISH"})
    factors = [SimpleNamespace(task=t) for t in params.tasks]
    for fig in (R.figure_pilot(names, runs, R.PILOT["lrs"][1], {t: 0.5 for t in names}, params),
                R.figure_impact(pred, factors, res, params), R.figure_predictors(res, params),
                R.figure_health(runs, params)):
        assert _laid_out(fig) == []


def test_09_pairs_and_10_arms_and_pilot_figures():
    import json
    from types import SimpleNamespace

    rng = np.random.default_rng(2)
    table = SimpleNamespace(x={"I": np.exp(rng.normal(-3, 1, 12))}, gain=rng.normal(0.05, 0.03, 12))
    pairs = SimpleNamespace(pairs=[(0, 1), (2, 3), (4, 5)], agree=2, n=3, p=0.5)
    assert _laid_out(P.figure_pairs(table, pairs)) == []
    tasks = list(suite.SUITE_TASKS[:24])
    gains = {t: T.TaskGain(t, m, 0.02, m - 0.04, m + 0.04) for t, m in zip(tasks, rng.normal(0.05, 0.05, 24))}
    control = {t: T.TaskGain(t, 0.01, 0.02, -0.03, 0.05) for t in tasks}
    assert _laid_out(T.figure_arms(tasks, {"unseen": gains}, control)) == []
    assert _laid_out(T.figure_pilot(json.loads(T.PILOT_FILE.read_text()))) == []   # the committed pilot


def test_03_and_07_figures_on_synthetic_results():
    from types import SimpleNamespace

    from vgh_lib.experiments import probe, pretraining_trajectory

    rng = np.random.default_rng(3)
    params = pretraining_trajectory.PretrainGRPOParams()
    metrics = ("loss", "greedy_accuracy", "pass1", "passk", "headroom")
    cps = [SimpleNamespace(step=s, metrics={m: float(rng.uniform(0.1, 0.9)) for m in metrics})
           for s in (0, 10, 100, 1000)]
    assert _laid_out(pretraining_trajectory.figure_trajectory(cps, params)) == []
    runs = [SimpleNamespace(history=SimpleNamespace(probe_steps=_curve(rng)[0], probe_value=_curve(rng)[1]),
                            after=rng.uniform(0, 1, 20), before=rng.uniform(0, 1, 20)) for _ in params.grpo_seeds]
    mid = pretraining_trajectory.MidGain(step=100, runs=runs, gains=np.zeros((len(runs), 20)), gain=0.05, gain_ci=(0.01, 0.09))
    assert _laid_out(pretraining_trajectory.figure_grpo(mid, params)) == []

    pb = probe.ProbeBookParams()
    steps = {s: [20, 40, 80, 150, 300] for s in pb.confirmation_seeds}
    reference = {(s, st): {"I": float(rng.uniform())} for s in steps for st in steps[s]}
    probe_vals = {(s, ps, "I"): list(rng.uniform(size=5)) for s in steps for ps in pb.probe_seeds}
    spear = {"I": rng.uniform(-1, 1, (len(steps), len(pb.probe_seeds)))}
    assert _laid_out(probe.figure_ranking(pb, steps, reference, probe_vals, spear)) == []
