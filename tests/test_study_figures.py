"""Every study's figures (and the tables that moved out of notebooks 09 and 10), each drawn on
small synthetic results under the book's theme: each passes the book's readability check
(plots.figure_problems), and its data-dependent parts (panels, lines, labels, threshold lines)
match what it was given. No experiment runs here."""
import json
import re
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402

from vgh_lib.common import impact, plots, prediction  # noqa: E402
from vgh_lib.experiments import gradient_factor as GF  # noqa: E402
from vgh_lib.experiments import real_lm as RL  # noqa: E402
from vgh_lib.experiments import transformer_costates as TC  # noqa: E402
from vgh_lib.experiments import value_impact as V  # noqa: E402
from vgh_lib.harness import verdicts  # noqa: E402
from vgh_lib.lm.tasks import LMExample  # noqa: E402
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
    plt.close("all")


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
        gains = [impact.TaskGain(t, m, 0.02, m - 0.04, m + 0.04) for t, m in zip(tasks, rng.normal(0.05, 0.05, n_tasks))]
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
    gains = {t: impact.TaskGain(t, m, 0.02, m - 0.04, m + 0.04) for t, m in zip(tasks, rng.normal(0.05, 0.05, 24))}
    control = {t: impact.TaskGain(t, 0.01, 0.02, -0.03, 0.05) for t in tasks}
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


# ------------------------------------------- notebooks 04, 05 (the rest), 06 and 11
def _visible(fig):
    """The axes that show something (not turned off), colour bars left out."""
    return [ax for ax in fig.axes if ax.axison and ax.get_label() != "<colorbar>"]


def _hlines_at(ax, y):
    """Horizontal lines spanning the axes (axhline) at data height ``y``."""
    return [ln for ln in ax.get_lines()
            if len(ln.get_ydata()) == 2 and np.allclose(np.asarray(ln.get_ydata(), float), y)
            and list(ln.get_xdata()) == [0, 1]]


def _vlines_at(ax, x):
    """Vertical lines spanning the axes (axvline) at data position ``x``."""
    return [ln for ln in ax.get_lines()
            if len(ln.get_xdata()) == 2 and np.allclose(np.asarray(ln.get_xdata(), float), x)
            and list(ln.get_ydata()) == [0, 1]]


def _n_points(ax):
    """Points drawn by scatter on ``ax``."""
    return sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))


# ------------------------------------------------------ notebook 04: transformer costates
STEPS_04 = (0, 20, 45, 90, 160, 260, 420, 650, 1000, 1500, 2200, 3000)   # 12 checkpoints


def _cells_04(params, rng, steps=STEPS_04, layers_step=None):
    """One cell per (checkpoint, τ, τ_r); a few cells have an SE above MAX_SE (unresolved)."""
    cells = []
    for i, step in enumerate(steps):
        pass1 = float(np.clip(i / len(steps), 0.0, 0.95))
        for tau in params.temperatures:
            for tau_r in params.relax_temperatures:
                rho = float(np.clip(1 - 0.3 * tau_r * tau + rng.normal(0, 0.03), -0.2, 1.0))
                se = float(rng.choice([0.01, 0.02, 0.2], p=[0.45, 0.45, 0.1]))
                layer = ({"embed": rho, "layer1": rho - 0.02, "layer2": rho - 0.05}
                         if step == layers_step else {})
                cells.append(TC.Cell(step=step, pass1=pass1, tau=tau, tau_r=tau_r,
                                     cosine=rho - 0.05, cosine_ci=(rho - 0.1, rho), rel_error=0.3,
                                     resolution_d=0.9, resolution_c=0.9,
                                     gap=float(rng.uniform(0.1, 3.0)), mean_gap=0.5,
                                     entropy=float(rng.uniform(0.1, 4.0)), reward=pass1,
                                     layer_cosines=layer, agreement=rho, agreement_se=se,
                                     r=float(rng.uniform(0.05, 0.8)), r_se=0.02))
    return cells


def test_04_error_figure_draws_each_resolved_cell_and_the_held_out_bound():
    params = TC.TransformerCostateParams()
    rng = np.random.default_rng(40)
    cells = _cells_04(params, rng)
    resolved = [c for c in cells if c.resolved(TC.MAX_SE)]
    assert 0 < len(resolved) < len(cells)
    n_test = 30
    bound = rng.uniform(0.0, 0.4, n_test)
    bt = TC.BoundTest([0, 45], [20, 90], 0.1, 0.05, 40, n_test, 0.8, 1.5, 20, 0.8, 0.3,
                      bound * rng.uniform(0.5, 1.2, n_test), bound)
    fig = TC.figure_error(resolved, bt)
    assert _laid_out(fig) == []
    panels = _visible(fig)
    assert len(panels) == 3 and len(fig.axes) == 5            # and a colour bar each on the left two
    assert _n_points(panels[0]) == _n_points(panels[1]) == len(resolved)
    assert _n_points(panels[2]) == n_test
    assert panels[2].get_title() == "held-out checkpoints"
    assert [t.get_text() for t in panels[2].get_legend().get_texts()] == ["error = bound"]


def test_04_error_figure_without_held_out_cells_leaves_the_third_panel_empty():
    params = TC.TransformerCostateParams()
    cells = _cells_04(params, np.random.default_rng(41))
    resolved = [c for c in cells if c.resolved(TC.MAX_SE)]
    bt = TC.BoundTest([0], [20], float("nan"), float("nan"), 1, 0, float("nan"), float("nan"), 0,
                      float("nan"), float("nan"), np.array([]), np.array([]))
    fig = TC.figure_error(resolved, bt)
    assert _laid_out(fig) == []
    assert _n_points(_visible(fig)[2]) == 0 and _visible(fig)[2].get_legend() is None


@pytest.mark.parametrize("n_steps", [1, 4, 7])
def test_04_r_bound_figure_has_one_panel_per_tested_checkpoint(n_steps):
    rng = np.random.default_rng(42)
    tested = list(STEPS_04[:n_steps])
    steps = np.repeat(tested, 5)
    bound = rng.uniform(0.05, 0.6, steps.size)
    rb = TC.RBoundTest([0.25, 1.0], {s: (0.1 * (i + 1), 0.02 * (i + 1)) for i, s in enumerate(tested)},
                       steps, bound * rng.uniform(0.3, 1.3, steps.size), np.full(steps.size, 0.02),
                       bound, 3)
    fig = TC.figure_r_bound(rb)
    assert _laid_out(fig) == []
    panels = _visible(fig)
    assert len(panels) == n_steps
    for ax, step in zip(panels, tested):
        c1, c2 = rb.constants[step]
        assert ax.get_title() == f"step {step}\n$C_1$ = {c1:.2g}, $C_2$ = {c2:.2g}"
        assert len(ax.containers) == 1 and len(ax.containers[0].lines[0].get_xdata()) == 5


def _fidelity_04(params, rng, steps):
    out = []
    for tau in params.temperatures:
        for step in steps:
            G = list(TC.GROUP_SIZES)
            pred = [float(1 / np.sqrt(1 + 4 / g)) for g in G]
            out.append(TC.Fidelity(step, 0.5, tau, 0.5, G, [p + rng.normal(0, 0.02) for p in pred],
                                   [0.02] * len(G), pred, pred, [0.0] * len(G)))
    return out


def test_04_fidelity_figure_has_one_panel_per_temperature_and_one_line_per_checkpoint():
    params = TC.TransformerCostateParams()
    steps = list(STEPS_04)
    fidelity = _fidelity_04(params, np.random.default_rng(43), steps)
    taus = list(params.temperatures)
    fig = TC.figure_fidelity(fidelity, taus, steps)
    assert _laid_out(fig) == []
    assert len(fig.axes) == len(taus)
    for ax, tau in zip(fig.axes, taus):
        assert ax.get_title() == f"τ = {tau:g}"
        assert len(ax.containers) == len(steps)                 # measured, one per checkpoint
        assert len([ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]) == len(steps)
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert labels == [f"step {s}" for s in steps]


@pytest.mark.parametrize("in_region", [[3, 4, 5, 6, 7], []])
def test_04_share_figure_marks_the_threshold_and_the_learning_region(in_region):
    rng = np.random.default_rng(44)
    steps = list(STEPS_04)
    n = len(steps)

    def summary(level):
        mean = np.clip(level + rng.normal(0, 0.05, n), 0, 1)
        return TC.ShareSummary(steps, mean, mean - 0.05, np.minimum(mean + 0.05, 1.0), float("nan"),
                               float("nan"))

    share, last = summary(0.95), summary(0.7)
    fig = TC.figure_share(share, last, in_region)
    assert _laid_out(fig) == []
    ax = fig.axes[0]
    assert len(_hlines_at(ax, TC.LAST_SHARE_MIN)) == 1
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(s) for s in steps]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert ("learning region" in legend) == bool(in_region)
    if in_region:
        span = next(p for p in ax.patches if p.get_label() == "learning region")
        x0, x1 = span.get_x(), span.get_x() + span.get_width()
        assert (x0, x1) == pytest.approx((min(in_region) - 0.4, max(in_region) + 0.4))


def test_04_layers_figure_has_one_line_per_mid_checkpoint_cell():
    params = TC.TransformerCostateParams()
    mid = STEPS_04[5]
    cells = _cells_04(params, np.random.default_rng(45), layers_step=mid)
    fig = TC.figure_layers(cells, mid)
    assert _laid_out(fig) == []
    ax = fig.axes[0]
    n_mid = len(params.temperatures) * len(params.relax_temperatures)
    assert len(ax.get_lines()) == n_mid
    assert [t.get_text() for t in ax.get_xticklabels()] == ["embed", "layer1", "layer2"]
    assert len(ax.get_legend().get_texts()) == n_mid
    assert ax.get_title() == f"per layer, step {mid}"


def test_04_grid_figure_has_one_panel_per_checkpoint_and_one_line_per_relaxation():
    params = TC.TransformerCostateParams()
    cells = _cells_04(params, np.random.default_rng(46))
    fig = TC.figure_grid(cells, params, TC.MAX_SE)
    assert _laid_out(fig) == []
    panels = _visible(fig)
    assert len(panels) == len(STEPS_04)
    for ax, step in zip(panels, STEPS_04):
        pass1 = next(c.pass1 for c in cells if c.step == step)
        assert ax.get_title() == f"step {step} (pass@1 {pass1:.2f})"
        assert len([ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]) == len(params.relax_temperatures)
    labels = [t.get_text() for t in panels[0].get_legend().get_texts()]
    assert labels == [f"$\\tau_r$={t:g}" for t in params.relax_temperatures]


def test_04_heatmap_figure_annotates_only_the_resolved_cells():
    params = TC.TransformerCostateParams()
    cells = _cells_04(params, np.random.default_rng(47))
    fig = TC.figure_heatmap(cells, params, TC.MAX_SE)
    assert _laid_out(fig) == []
    panels = _visible(fig)
    assert len(panels) == len(params.relax_temperatures)
    for ax, tau_r in zip(panels, params.relax_temperatures):
        n_resolved = sum(c.tau_r == tau_r and c.resolved(TC.MAX_SE) for c in cells)
        assert 0 < n_resolved < len(STEPS_04) * len(params.temperatures)
        assert len([t for t in ax.texts if t.get_text()]) == n_resolved   # unresolved: blank
        assert [t.get_text() for t in ax.get_yticklabels()] == [str(s) for s in STEPS_04]
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"{t:g}" for t in params.temperatures]


# ------------------------------------------------------------------ notebook 06: real LM
def _screened_06(params, rng):
    means = dict(zip(RL.TASKS, np.linspace(0.95, 0.05, len(RL.TASKS))))
    return [SimpleNamespace(example=LMExample(t, "q", "a", "p"),
                            value=float(np.clip(m + rng.normal(0, 0.1), 0, 1)))
            for t, m in means.items() for _ in range(params.per_task)]


def test_06_tasks_figure_orders_the_tasks_by_mean_and_shades_the_kept_range():
    params = RL.RealLMParams()
    screened = _screened_06(params, np.random.default_rng(60))
    task_means = RL.task_means(screened)
    fig = RL.figure_tasks(screened, task_means, params)
    assert _laid_out(fig) == []
    ax = fig.axes[0]
    order = sorted(task_means, key=task_means.get, reverse=True)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert [re.sub(r"\s", "", lab) for lab in labels] == [t.replace("_", "") for t in order]
    bars = [ln for ln in ax.get_lines() if ln.get_color() == "k"]
    assert [float(b.get_ydata()[0]) for b in bars] == pytest.approx([task_means[t] for t in order])
    assert _n_points(ax) == len(screened)
    (span,) = ax.patches                                   # the kept range of V^D
    assert (span.get_y(), span.get_y() + span.get_height()) == pytest.approx((params.value_lo, params.value_hi))


def test_06_tasks_figure_breaks_no_task_name_inside_a_word():
    params = RL.RealLMParams()
    screened = _screened_06(params, np.random.default_rng(60))
    fig = RL.figure_tasks(screened, RL.task_means(screened), params)
    labels = {t.get_text().replace("\n", " ") for t in fig.axes[0].get_xticklabels()}
    assert labels == {t.replace("_", " ") for t in RL.TASKS}


def _results_06(params, rng, n_prompts=4):
    tasks = RL.TASKS[:n_prompts]
    out = []
    for i, t in enumerate(tasks):
        relaxed = [dict(tau=tau, tau_r=tr, rho=float(1 - 0.2 * tr * tau + rng.normal(0, 0.02)),
                        se=0.02, raw=0.8, r=float(rng.uniform(0.05, 0.6)) if j % 4 else float("nan"),
                        r_se=0.03, gap=float(10 ** rng.uniform(-3, 1)), entropy=1.0, reward=0.5,
                        value=0.5)
                   for j, (tau, tr) in enumerate((tau, tr) for tau in params.temperatures
                                                 for tr in params.relax_temperatures)]
        out.append(SimpleNamespace(task=t, value=0.2 + 0.15 * i, relaxed=relaxed,
                                   fidelity={G: (float(1 / np.sqrt(1 + 8 / G)), 0.1) for G in params.group_sizes}))
    return out


def test_06_fidelity_figure_has_one_curve_per_prompt():
    params = RL.RealLMParams()
    results = _results_06(params, np.random.default_rng(61))
    fid = RL.fidelity_summary(results)
    fig = RL.figure_fidelity(results, fid)
    assert _laid_out(fig) == []
    ax = fig.axes[0]
    assert len(ax.get_lines()) == len(results)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        f"{r.task} ($V^D$={r.value:.2f})" for r in results]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(G) for G in params.group_sizes]


def test_06_relaxed_figure_has_one_series_per_prompt_and_relaxation():
    params = RL.RealLMParams()
    results = _results_06(params, np.random.default_rng(62))
    fig = RL.figure_relaxed(results, params)
    assert _laid_out(fig) == []
    left, right = fig.axes
    assert len(left.containers) == len(results) * len(params.relax_temperatures)
    assert len(left.get_legend().get_texts()) == len(results) * len(params.relax_temperatures)
    assert [t.get_text() for t in right.get_legend().get_texts()] == [r.task for r in results]
    # the right panel leaves out the cells whose r is not measured (NaN)
    drawn = sum(len(c.lines[0].get_xdata()) for c in right.containers)
    assert drawn == sum(np.isfinite(c["r"]) for r in results for c in r.relaxed)
    assert len(_hlines_at(right, 0.0)) == 1


# ---------------------------------------------------------- notebook 11: gradient factor
def _table_11(rng, per=6, seeds=6):
    recipes = np.repeat(list(GF.RECIPES), per)
    n = recipes.size
    x = {p: np.exp(rng.normal(-3, 1, n)) for p in GF.PREDICTORS}
    x["alignment"] = rng.normal(0, 1, n)
    x["reward std"] = rng.uniform(0.05, 0.5, n)
    gains = (0.02 * np.log(x[GF.PRIMARY]) + 0.1)[:, None] + rng.normal(0, 0.01, (n, seeds))
    return GF.Table(recipes, np.tile(np.arange(per) * 100, len(GF.RECIPES)), x, gains,
                    {p: 1.0 for p in GF.PREDICTORS}, 10.0, 0.02)


def _analysis_11(rng, reliability=0.64):
    scores = {p: GF.Score(prediction.Interval(0.6 - 0.08 * i, 0.05, 0.4 - 0.08 * i, 0.8 - 0.08 * i, 6),
                          prediction.Interval(0.2, 0.05, -0.5, 0.4, 6), 0.5 - 0.07 * i,
                          (0.5 - 0.07 * i) / np.sqrt(reliability))
              for i, p in enumerate(rng.permutation(GF.PREDICTORS))}
    primary = verdicts.Test(f"{GF.PRIMARY} beyond {GF.BASELINE}", 0.31, 0.05, 0.55, 0.01, True, 0.01)
    secondary = [verdicts.Test(n, 0.1, -0.2, 0.4, 0.3) for n in (*GF.SECONDARY, "exact I against I")]
    return GF.Analysis(36, 6, 0.47, reliability, 0.7, 8.0, primary, secondary, scores)


def test_11_partial_figure_colours_each_recipe_and_names_the_primary_test():
    rng = np.random.default_rng(110)
    table, res = _table_11(rng), _analysis_11(rng)
    fig = GF.figure_partial(table, res, "11, profile test")
    assert _laid_out(fig) == []
    ax = fig.axes[0]
    recipes = list(dict.fromkeys(table.recipe))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == recipes
    assert [len(c.get_offsets()) for c in ax.collections] == [int(np.sum(table.recipe == r)) for r in recipes]
    assert ax.get_title() == f"11, profile test: partial r = {verdicts.interval_text(res.primary)}"
    assert len(_hlines_at(ax, 0.0)) == 1 and len(_vlines_at(ax, 0.0)) == 1


def test_11_scores_figure_ranks_the_predictors_and_draws_the_ceiling():
    rng = np.random.default_rng(111)
    res = _analysis_11(rng, reliability=0.64)
    fig = GF.figure_scores(res, "6 recipes, 36 checkpoints, 6 GRPO seeds")
    assert _laid_out(fig) == []
    left, right = fig.axes
    order = sorted(GF.PREDICTORS, key=lambda p: -res.scores[p].rank_oos.value)
    assert [t.get_text() for t in left.get_yticklabels()] == order
    assert len(_vlines_at(right, res.ceiling)) == 1 and len(_vlines_at(right, -res.ceiling)) == 1
    assert res.ceiling == pytest.approx(0.8)
    assert f"√reliability = {res.ceiling:.2f}" in fig.get_suptitle()
    assert _n_points(right) == 2 * len(GF.PREDICTORS)               # raw and disattenuated


# ------------------------------------------------- notebook 05: value impact (the rest)
def _analysis_05(opt, params, rng, steps=None):
    steps = np.array(steps or params.checkpoint_grid)
    T, K = len(params.confirmation_seeds), len(steps)
    gain = [rng.normal(0.05, 0.03, K) for _ in range(T)]
    preds = [{n: (np.exp(rng.normal(-3, 1, K)) if n in ("I", "S") else rng.uniform(0.05, 1, K))
              for n in (*impact.PREDICTORS, "pass@1")} for _ in range(T)]
    spear = {n: rng.uniform(-0.5, 0.9, T) for n in impact.PREDICTORS}
    pooled = {n: float(np.mean(v)) for n, v in spear.items()}
    return impact.Analysis(opt, [steps.copy() for _ in range(T)], gain,
                           [np.stack([g - 0.02, g + 0.02], axis=1) for g in gain], preds, spear,
                           {n: [(-0.5, 0.9)] * T for n in impact.PREDICTORS}, pooled,
                           {n: (v - 0.3, min(v + 0.3, 1.0)) for n, v in pooled.items()},
                           {n: (0.1, -0.2, 0.4) for n in impact.PREDICTORS[1:]}, 0.03)


def _results_05(params, seed):
    rng = np.random.default_rng(seed)
    return {opt: _analysis_05(opt, params, rng) for opt in V.OPTIMIZERS}


def test_05_impact_gain_figure_labels_every_checkpoint_with_its_step():
    params = V.ValueImpactParams()
    results = _results_05(params, 50)
    fig = V.figure_impact_gain(results, params)
    assert _laid_out(fig) == []
    assert len(fig.axes) == len(V.OPTIMIZERS)
    for ax, (opt, res) in zip(fig.axes, results.items()):
        labels = [t.get_text() for t in ax.texts if t.get_text()]
        assert sorted(labels) == sorted(str(int(s)) for s in np.concatenate(res.steps))
        assert len(ax.containers) == len(params.confirmation_seeds)
        assert len(ax.get_legend().get_texts()) == len(params.confirmation_seeds)
        lr = params.adamw_lr if opt == "adamw" else params.sgd_lr
        assert ax.get_title().startswith(f"{opt} (lr {lr:g}): pooled Spearman {res.pooled['I']:.2f}")
        assert ax.get_xscale() == "log"


def test_05_trajectory_figure_has_one_panel_per_trajectory():
    params = V.ValueImpactParams()
    results = _results_05(params, 51)
    fig = V.figure_trajectory(results, params)
    assert _laid_out(fig) == []
    assert len(fig.axes) == len(params.confirmation_seeds)
    for ax, s in zip(fig.axes, params.confirmation_seeds):
        assert ax.get_title() == f"trajectory {s}"
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels == [f"gain ({o})" for o in results] + [f"{n} (scaled)" for n in ("I", "S", "H")]


def test_05_predictors_figure_draws_the_claims_threshold_in_each_panel():
    params = V.ValueImpactParams()
    results = _results_05(params, 52)
    fig = V.figure_predictors(results, params)
    assert _laid_out(fig) == []
    assert len(fig.axes) == len(V.OPTIMIZERS)
    for ax, (opt, res) in zip(fig.axes, results.items()):
        assert ax.get_title() == opt
        assert len(_vlines_at(ax, V.SPEARMAN_MIN)) == 1 and len(_vlines_at(ax, 0.0)) == 1
        assert [t.get_text() for t in ax.get_yticklabels()] == list(res.pooled)
    assert f"threshold {V.SPEARMAN_MIN:g}" in fig.get_suptitle()


def test_05_pilot_not_run_figure_says_so():
    params = V.ValueImpactParams()
    fig = V.figure_pilot_not_run(params)
    assert _laid_out(fig) == []
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == [f"pilot not rerun (pilot=False); 05_value_impact, profile {params.profile}"]
