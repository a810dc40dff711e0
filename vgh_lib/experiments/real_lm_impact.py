"""Value impact across *tasks* in a real pretrained language model (book/theory.md §4 on SmolLM2-135M;
notebook ``08_real_lm_impact``).

A real LM has no pretraining trajectory, so the design points are the tasks of
:mod:`vgh_lib.lm.tasks`. For each task, before any RL:

* pass@1 = the mean exact value ``V^D`` (teacher-forced probability of the correct answer) of
  the task's training prompts, and, because samples are independent,
  pass@k = ``1 − (1 − V^D)^k`` exactly; so ``H = E_x[pass@k − pass@1]`` and the reward-std
  signal ``E_x sqrt(V(1 − V))`` carry no sampling noise;
* ``S``: the U-statistic of the GRPO update of the trained parameters over independent
  batches (:func:`vgh_lib.lm.grpo.signal_gram`), and ``I = S·H``.

Then GRPO on the top layers (:func:`vgh_lib.lm.grpo.train`) per task and seed, and the gain:
the paired difference of the mean exact value of the task's held-out prompts after and before.
:func:`vgh_lib.common.impact.analyse` does the inference with the tasks as fixed design points.

The rules that choose the design (``PILOT``, :func:`pilot_tasks`, :func:`choose_lr`) were
committed before the pilot ran (``book/08_preregistration.md``); none of them looks at ``I``,
``S``, ``H`` or any gain.
"""

from __future__ import annotations

import time
import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from vgh_lib.common import impact
from vgh_lib.common.impact import predictor_table  # noqa: F401 (notebook 08's predictor table)
from vgh_lib.common.parallel import run_jobs
from vgh_lib.common.stats import spearman_critical
from vgh_lib.errors import ParameterError
from vgh_lib.experiments.designs import REAL_LM_CHOSEN
from vgh_lib.experiments.grpo_budget import LMGRPOBudget
from vgh_lib.harness.claims import ClaimSpec, Measured
from vgh_lib.harness.params import NotebookParams, OnDevice, RealModel, Workers, spec
from vgh_lib.lm.cache import model_for, prefix_for
from vgh_lib.lm import costates as lm_costates
from vgh_lib.lm import grpo as lm_grpo
from vgh_lib.lm import tasks as lm_tasks
from vgh_lib.lm.tasks import LM_TASKS


@dataclass(frozen=True)
class RealLMImpactParams(LMGRPOBudget, RealModel, Workers, OnDevice, NotebookParams):
    """Parameters of ``08_real_lm_impact`` (book/theory.md §4 across tasks in SmolLM2-135M; the
    design is pre-registered in book/08_preregistration.md)."""

    # the run profiles: their overrides of the defaults below (the defaults are `default`)
    PROFILES: ClassVar[dict] = {"smoke": {"model_path": "tiny", "target": "greedy",
                                          "tasks": ("products", "sums", "differences"), "train_limit": 6,
                                          "held_out_limit": 4, "probe_prompts": 3, "grpo_steps": 2,
                                          "grpo_prompts": 2, "group_size": 4, "train_layers": 1,
                                          "probe_every": 1, "grpo_seeds": (1, 2), "signal_batches": 3,
                                          "signal_prompts": 2, "n_boot": 200, "n_perm": 200,
                                          "pilot_steps": 2, "jobs": 1},
                                "default": {},
                                "paper": {"train_limit": 400, "held_out_limit": 200, "probe_prompts": 64,
                                          "grpo_steps": 60, "train_layers": 30, "grpo_seeds": tuple(range(1, 9)),
                                          "signal_prompts": 32, "device": "auto"}}

    tasks: tuple[str, ...] = spec(LM_TASKS, choices=LM_TASKS, help="the tasks (design points)")
    train_limit: int = spec(64, lo=2, hi=100_000, help="training prompts per task (GRPO, S, factors)")
    held_out_limit: int = spec(32, lo=1, hi=100_000, help="held-out prompts per task (the gain)")
    probe_prompts: int = spec(12, lo=1, hi=100_000, help="training prompts of the exact probe value")
    grpo_lr: float = spec(REAL_LM_CHOSEN["lr"], lo=1e-8, hi=1.0, help="AdamW learning rate (committed)")
    grpo_seeds: tuple[int, ...] = spec((1, 2, 3), lo=1, hi=2**31 - 1,
                                  help="GRPO seeds of the confirmation (seed 0 is the pilot's)")
    signal_batches: int = spec(8, lo=2, hi=1000, help="independent batches of the signal S")
    signal_prompts: int = spec(8, lo=1, hi=100_000, help="distinct prompts per batch of the signal S")
    k: int = spec(8, lo=1, hi=1024, help="the k of pass@k in the headroom H")
    n_boot: int = spec(2000, lo=100, hi=1_000_000, help="bootstrap resamples")
    n_perm: int = spec(10_000, lo=100, hi=10_000_000, help="permutations of the Spearman test")
    pilot: bool = spec(True, help="rerun the pilot and show what the pre-registered rules choose")
    pilot_steps: int = spec(20, lo=1, hi=100_000, help="GRPO steps of each pilot run")

    def check(self) -> None:
        if len(self.tasks) < 3:
            raise ParameterError(f"parameter 'tasks' needs at least 3 tasks for a rank correlation, "
                                 f"got {len(self.tasks)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ParameterError(f"parameter 'tasks' repeats a task: {self.tasks}")
        if self.signal_prompts > self.train_limit:
            raise ParameterError(f"parameter 'signal_prompts' = {self.signal_prompts} must be at most "
                                 f"'train_limit' = {self.train_limit}")

    def critical_spearman(self) -> float:
        """The exact one-sided 5 % critical Spearman for ``len(tasks)`` design points."""
        return spearman_critical(len(self.tasks))

    def widening(self) -> float:
        """The pre-registered small-sample widening of the gain's deviations for ``len(seeds)``
        seeds (:func:`vgh_lib.common.impact.small_sample_scale`)."""
        return impact.small_sample_scale(len(self.grpo_seeds))

    def design(self) -> "Design":
        """The :class:`Design` of these parameters."""
        return Design(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Design)})

# Written down before the pilot ran (book/08_preregistration.md).
PILOT = {
    "seed": 0,                          # the pilot's GRPO seed; never a confirmation seed
    "pass1_targets": (0.25, 0.5, 0.9),  # pilot tasks: training pass@1 closest to these
    "lrs": (3e-4, 1e-4, 3e-5, 1e-5),    # AdamW, top layers
    "steps": 20,
    "collapse_tolerance": 0.05,
}

def task_pairs(model, tokenizer, task: str, split: str, limit: int | None,
               target: str = "task") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(prompt ids, answer ids) of the first ``limit`` prompts of ``task`` in ``split`` (suite
    order). ``target="greedy"`` replaces each answer by the model's own greedy answer of the
    same length: a reward that a model which solves no task (the smoke profile's tiny random
    llama) can still earn."""
    if target not in ("task", "greedy"):
        raise ValueError(f"target must be 'task' or 'greedy', got {target!r}")
    device = next(model.parameters()).device
    pairs = lm_grpo.encode(tokenizer, lm_tasks.suite(split, limit, (task,)), device)
    if target == "greedy":
        pairs = lm_costates.greedy_targets(model, pairs)
    return pairs


@dataclass(frozen=True, kw_only=True)
class Design(LMGRPOBudget):
    """Everything a job needs besides the task, the learning rate and the seed (built from
    notebook 08's parameters by ``RealLMImpactParams.design``, which holds the defaults); its
    GRPO budget is the parameters' own (:class:`~vgh_lib.experiments.grpo_budget.LMGRPOBudget`)."""

    model_path: str
    target: str                  # "task" or "greedy" (task_pairs)
    train_limit: int             # training prompts of a task (suite order): GRPO, S and the factors
    held_out_limit: int          # held-out prompts of a task (suite order): the gain
    probe_prompts: int           # the first training prompts: the exact probe value
    signal_batches: int
    signal_prompts: int
    k: int
    device: str = "cpu"


@dataclass
class TaskRun(impact.PairedGain):
    """One GRPO run on one task: exact held-out values before and after, the probe curve."""

    task: str
    lr: float
    seed: int
    before: np.ndarray
    after: np.ndarray
    probe_steps: list[int]
    probe_value: list[float]
    mean_reward: list[float]
    seconds: float


@dataclass(frozen=True)
class GainJob:
    """GRPO on one task with one learning rate and seed (:func:`run_gain`); ``steps`` overrides
    the design's (the pilot's shorter runs)."""

    design: Design
    task: str
    lr: float
    seed: int
    steps: int | None = None

    def paths(self) -> tuple[str, ...]:
        return (self.design.model_path,)


@dataclass(frozen=True)
class FactorJob:
    """The pre-RL factors of one task (:func:`run_factors`); ``seed`` draws the signal's batches."""

    design: Design
    task: str
    seed: int

    def paths(self) -> tuple[str, ...]:
        return (self.design.model_path,)


@dataclass
class TaskFactors:
    """What :func:`run_factors` measured on one task."""

    task: str
    values: np.ndarray          # (P,) exact value V^D of each training prompt
    gram: np.ndarray            # (M, M) the signal's batch estimates
    k: int
    seconds: float

    @property
    def signal(self) -> tuple[float, float]:
        """``S`` and its standard error (:func:`vgh_lib.common.impact.signal`)."""
        return impact.signal(self.gram)


def run_gain(job: GainJob) -> TaskRun:
    """One GRPO run on one task, on one thread; the process's cached model is left as it was."""
    torch.set_num_threads(1)
    d = job.design
    model, tok = model_for(d.model_path, d.device)
    train = task_pairs(model, tok, job.task, "train", d.train_limit, d.target)
    held = task_pairs(model, tok, job.task, "held_out", d.held_out_limit, d.target)
    cfg = d.grpo_config(lr=job.lr, seed=job.seed, steps=job.steps)
    t0 = time.perf_counter()
    prefix = prefix_for(d.model_path, d.device, d.train_layers)
    with lm_grpo.restored(lm_grpo.top_parameters(model, d.train_layers)):
        before = lm_grpo.exact_values(model, held, prefix=prefix)
        history = lm_grpo.train(model, train, train[:d.probe_prompts], cfg, prefix=prefix)
        after = lm_grpo.exact_values(model, held, prefix=prefix)
    return TaskRun(job.task, job.lr, job.seed, before, after, history.probe_steps,
                   history.probe_value, history.mean_reward, time.perf_counter() - t0)


def run_factors(job: FactorJob) -> TaskFactors:
    """The pre-RL factors of one task, on one thread: the exact value of each training prompt,
    and the Gram matrix of the signal's batches."""
    torch.set_num_threads(1)
    d = job.design
    model, tok = model_for(d.model_path, d.device)
    train = task_pairs(model, tok, job.task, "train", d.train_limit, d.target)
    prefix = prefix_for(d.model_path, d.device, d.train_layers)
    t0 = time.perf_counter()
    values = lm_grpo.exact_values(model, train, prefix=prefix)
    gram = lm_grpo.signal_gram(model, train, d.signal_batches, min(d.signal_prompts, len(train)),
                               d.group_size, 1.0, d.train_layers, job.seed, prefix)
    return TaskFactors(job.task, values, gram, d.k, time.perf_counter() - t0)


def gain_jobs(design: Design, tasks, lrs, seeds, steps: int | None = None) -> list[GainJob]:
    """One :class:`GainJob` per task, learning rate and seed."""
    return [GainJob(design, t, lr, s, steps) for t in tasks for lr in lrs for s in seeds]


def factor_jobs(design: Design, tasks, seed: int) -> list[FactorJob]:
    """One :class:`FactorJob` per task; ``seed`` draws the signal's batches."""
    return [FactorJob(design, t, seed) for t in tasks]


# ------------------------------------------------------------ the pre-registered rules
def pilot_tasks(pass1: dict[str, float], targets=PILOT["pass1_targets"]) -> list[str]:
    """The tasks whose training pass@1 is closest to each target (distinct, in task order)."""
    names = list(pass1)
    return [names[i] for i in impact.pilot_checkpoints([pass1[n] for n in names], targets)]


def choose_lr(pilot_runs: list[TaskRun], tolerance: float = PILOT["collapse_tolerance"]) -> float:
    """The largest learning rate whose probe value never fell more than ``tolerance`` below
    its start on any pilot task (:func:`vgh_lib.common.impact.choose_lr`)."""
    drops: dict[float, list[float]] = {}
    for r in pilot_runs:
        drops.setdefault(r.lr, []).append(r.largest_drop)
    return impact.choose_lr(drops, tolerance)


# ------------------------------------------------------------------------- inference
def task_data(factors: list[TaskFactors], runs: list[TaskRun]) -> list[impact.CheckpointData]:
    """The tasks as design points of :func:`vgh_lib.common.impact.analyse` (label = task index, in
    the order of ``factors``): exact factor values, the signal's Gram matrix, and the
    (seeds, held-out prompts) paired gains."""
    out = []
    for i, f in enumerate(factors):
        mine = sorted((r for r in runs if r.task == f.task), key=lambda r: r.seed)
        if not mine:
            raise ValueError(f"no GRPO runs on task {f.task!r}")
        out.append(impact.CheckpointData.from_values(i, f.gram, f.values, f.k,
                                                     np.stack([r.after - r.before for r in mine])))
    return out


def mean_gain_ci(data: list[impact.CheckpointData], n_boot: int, seed: int = 0,
                 level: float = 0.95, seeds: bool = True, prompts: bool = True,
                 scale: bool = True) -> tuple[float, float, float]:
    """The mean gain over tasks and its interval: GRPO seeds and held-out prompts resampled
    within each task (:func:`vgh_lib.common.impact.bootstrap_gain`, deviations widened by the
    small-sample factor of the seeds when ``scale``), never the tasks. ``seeds=False`` or
    ``prompts=False`` holds that source fixed (an exploratory split of the interval's width)."""
    rng = np.random.default_rng(seed)
    boot = np.mean([impact.bootstrap_gain(cp.gains, n_boot, rng, scale, seeds, prompts)
                    for cp in data], axis=0)
    lo, hi = impact.percentile_ci(boot, level)
    return float(np.mean([cp.gain() for cp in data])), lo, hi


# -------------------------------------------------------------- what notebook 08 runs
@dataclass
class ModelSize:
    """Millions of parameters in all and trained, and the blocks GRPO leaves frozen."""

    params_m: float
    trained_m: float
    frozen_blocks: int


def model_size(params: RealLMImpactParams) -> ModelSize:
    """The size of the process's copy of the model (:func:`model_for`) under the design."""
    model, _ = model_for(params.model_path, params.device)
    return ModelSize(sum(p.numel() for p in model.parameters()) / 1e6,
                     sum(p.numel() for p in lm_grpo.top_parameters(model, params.train_layers)) / 1e6,
                     model.config.num_hidden_layers - params.train_layers)


def measure_factors(params: RealLMImpactParams) -> list[TaskFactors]:
    """Every task's pre-RL factors, ``params.jobs`` at a time."""
    return run_jobs(run_factors, factor_jobs(params.design(), params.tasks, params.seed),
                    params.jobs, desc="factors (S, H)")


@dataclass
class Pilot:
    """The rerun pilot: its tasks, runs, and the learning rate the rule chooses (a live object,
    like notebook 05's :class:`~vgh_lib.experiments.value_impact.Pilot`; the pilots of 09–12
    return the JSON record they commit instead)."""

    tasks: list[str]
    runs: list[TaskRun]
    lr: float


def run_pilot(params: RealLMImpactParams, pass1: dict[str, float]) -> Pilot:
    """The pilot (GRPO seed ``PILOT["seed"]``, every rate of ``PILOT["lrs"]``, ``pilot_steps``
    steps) on the tasks :func:`pilot_tasks` picks from the training pass@1 ``pass1``."""
    names = pilot_tasks({t: pass1[t] for t in params.tasks})
    runs = run_jobs(run_gain, gain_jobs(params.design(), names, PILOT["lrs"], [PILOT["seed"]],
                                        steps=params.pilot_steps), params.jobs, desc="pilot runs")
    return Pilot(names, runs, choose_lr(runs))


def run_confirmation(params: RealLMImpactParams) -> list[TaskRun]:
    """GRPO on every task with every confirmation seed at the committed rate ``params.grpo_lr``."""
    return run_jobs(run_gain, gain_jobs(params.design(), params.tasks, [params.grpo_lr], params.grpo_seeds),
                    params.jobs, desc="GRPO runs")


def collapsed(runs: list[TaskRun], tolerance: float = PILOT["collapse_tolerance"]) -> list[TaskRun]:
    """The runs whose probe value fell more than ``tolerance`` below its start."""
    return [r for r in runs if r.largest_drop > tolerance]


def interval_by_source(params: RealLMImpactParams, data: list[impact.CheckpointData]
                       ) -> dict[str, tuple[float, float, float]]:
    """Exploratory, not pre-registered: the mean gain's interval with one source held fixed, or
    without the small-sample widening (:func:`mean_gain_ci`)."""
    return {"seeds only, widened": mean_gain_ci(data, params.n_boot, params.seed, prompts=False),
            "prompts only, not widened": mean_gain_ci(data, params.n_boot, params.seed, seeds=False,
                                                      scale=False),
            "both, not widened": mean_gain_ci(data, params.n_boot, params.seed, scale=False)}


def analyse_tasks(params: RealLMImpactParams, factors: list[TaskFactors], runs: list[TaskRun]
                  ) -> tuple[list[impact.CheckpointData], impact.Analysis, tuple[float, float, float]]:
    """The tasks as design points (:func:`task_data`), the pre-registered inference across
    them (:func:`vgh_lib.common.impact.analyse`, one "trajectory") and the mean gain with its
    interval (:func:`mean_gain_ci`)."""
    data = task_data(factors, runs)
    res = impact.analyse([data], "adamw", params.n_boot, params.n_perm, seed=params.seed)
    return data, res, mean_gain_ci(data, params.n_boot, params.seed)


TASK_TABLE_HEADER = ["task", "pass@1", "H", "S", "I = S·H", "reward std", "gain [95% CI]"]


def task_rows(factors: list[TaskFactors], res: impact.Analysis) -> list[list[str]]:
    """One row per task (in ``factors``' order, the design points of ``res``): its pre-RL
    factors and its mean gain with the nested-bootstrap interval."""
    pred, gain, ci = res.predictors[0], res.gain[0], res.gain_ci[0]
    return [[f.task, f"{pred['pass@1'][j]:.3f}", f"{pred['H'][j]:.3f}", f"{pred['S'][j]:.3g}",
             f"{pred['I'][j]:.3g}", f"{pred['reward std'][j]:.3f}",
             f"{gain[j]:+.3f} [{ci[j, 0]:+.3f}, {ci[j, 1]:+.3f}]"]
            for j, f in enumerate(factors)]


def seed_gains(tasks, runs: list[TaskRun]) -> dict[str, list[float]]:
    """Each task's gain per GRPO seed, in seed order: how much GRPO's randomness moves it."""
    return {name: [r.gain for r in sorted((r for r in runs if r.task == name), key=lambda r: r.seed)]
            for name in tasks}


def seed_table(seeds, per_seed: dict[str, list[float]]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of :func:`seed_gains` as a table, one column per GRPO seed."""
    return (["task"] + [f"GRPO seed {s}" for s in seeds],
            [[name] + [f"{g:+.3f}" for g in gains] for name, gains in per_seed.items()])


# ------------------------------------------------------------------------------ the claims
# Registered in book/08_preregistration.md before the confirmation ran.
SPEARMAN_MIN = 0.6
ALPHA = 0.05

CLAIMS = (
    ClaimSpec("r5.impact_gain.spearman",
              "Spearman correlation across tasks of I = S·H (before RL) with the real GRPO gain "
              "(nested-bootstrap interval)", ">=", SPEARMAN_MIN, kind="empirical",
              fails_if="I ranks the tasks' gains weakly: Spearman below 0.6"),
    ClaimSpec("r5.permutation_p", "one-sided permutation p-value of Spearman(I, gain) across tasks",
              "<=", ALPHA, kind="empirical",
              fails_if="the ranking of gains by I is compatible with chance (p above 0.05)"),
    ClaimSpec("r5.collapsed_runs", "confirmation runs whose probe value fell more than 0.05 below its start",
              "<=", 0, kind="empirical",
              fails_if="any confirmation GRPO run damages the policy (probe drop above 0.05)"),
    ClaimSpec("r5.mean_gain", "mean GRPO gain in exact held-out pass@1 over the tasks (bootstrap over "
              "seeds and prompts within each task)", ">", 0.0, kind="empirical", require_ci=True,
              fails_if="GRPO on the top blocks does not raise held-out pass@1, or the interval includes 0"),
)


def claim_values(res: impact.Analysis, collapsed_runs: list, mean_gain) -> dict[str, Measured]:
    """What notebook 08 measured for each of :data:`CLAIMS` (``mean_gain``: mean, lo, hi)."""
    return {"r5.impact_gain.spearman": Measured(res.pooled["I"], ci=tuple(res.pooled_ci["I"])),
            "r5.permutation_p": Measured(res.p_value),
            "r5.collapsed_runs": Measured(len(collapsed_runs)),
            "r5.mean_gain": Measured(mean_gain[0], ci=tuple(mean_gain[1:]))}


def finding(res: impact.Analysis, mean_gain) -> str:
    """The landing page's one line for this run."""
    return (f"Spearman(I, GRPO gain) across tasks {res.pooled['I']:+.2f} (p = {res.p_value:.2g}); "
            f"mean GRPO gain {mean_gain[0]:+.3f}")


# ----------------------------------------------------------------------- the figures


def figure_pilot(pilot_names, pilot_runs, chosen_lr, pass1, params):
    """The pilot's learning-rate runs per pilot task: probe value minus its start; dashed: the collapse tolerance."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    lrs = PILOT["lrs"]
    fig, axes = plt.subplots(1, len(pilot_names), figsize=plots.figsize(4.2 * len(pilot_names), 3.4), sharey=True,
                             squeeze=False)
    for ax, name in zip(axes[0], pilot_names):
        for lr_ in lrs:
            r = next(r for r in pilot_runs if r.task == name and r.lr == lr_)
            ax.plot(r.probe_steps, np.array(r.probe_value) - r.probe_value[0], "o-", ms=3,
                    label=f"lr {lr_:g}" + (" (chosen)" if lr_ == chosen_lr else ""))
        ax.axhline(-PILOT["collapse_tolerance"], color="k", ls="--", lw=0.8)
        ax.set_title(f"{name} (pass@1 {pass1[name]:.2f})", fontsize=9)
        ax.set_xlabel("GRPO step")
    axes[0, 0].set_ylabel("ΔJ: probe value minus its start")
    axes[0, -1].legend(fontsize=9)
    fig.suptitle(f"08_real_lm_impact pilot (GRPO seed {PILOT['seed']}), profile {params.profile}; "
                 "dashed: the collapse tolerance", fontsize=9)
    return fig


def figure_impact(pred, factors, res, params):
    """Each task's GRPO gain (95 % interval) against its value impact I and against its pass@1
    before RL, every point labelled with its task."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    fig, axes = plt.subplots(1, 2, figsize=plots.figsize(11, 4.4))
    for ax, name in zip(axes, ("I", "pass@1")):
        x, g, ci = pred[name], res.gain[0], res.gain_ci[0]
        ax.errorbar(x, g, yerr=[g - ci[:, 0], ci[:, 1] - g], fmt="o", capsize=3)
        plots.label_points(ax, x, g, [f.task for f in factors], fontsize=9)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_ylabel("GRPO gain in exact held-out pass@1")
    axes[0].set_xlabel("value impact I = S·H (before RL)")
    axes[0].set_title(f"Spearman {res.spearman['I'][0]:.2f}, permutation p = {res.p_value:.3g}", fontsize=9)
    axes[1].set_xlabel("pass@1 before RL (training prompts)")
    axes[1].set_title(f"Spearman(1 − pass@1, gain) {res.spearman['1 − pass@1'][0]:.2f}", fontsize=9)
    fig.suptitle(f"08_real_lm_impact, profile {params.profile}: {len(params.tasks)} tasks, "
                 f"{len(params.grpo_seeds)} GRPO seeds, lr {params.grpo_lr:g}, "
                 f"top {params.train_layers} blocks", fontsize=9)
    return fig


def figure_predictors(res, params):
    """Each predictor's Spearman with the gain across tasks (95 % interval)."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    fig, ax = plt.subplots(figsize=plots.figsize(6, 2.8))
    names = list(res.pooled)
    plots.intervals(ax, names, [res.pooled[n] for n in names], [res.pooled_ci[n][0] for n in names],
                    [res.pooled_ci[n][1] for n in names], reference=0.0)
    ax.axvline(SPEARMAN_MIN, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("Spearman with the gain across tasks (95 % CI)")
    fig.suptitle(f"08_real_lm_impact, profile {params.profile}; dotted: the claim's threshold "
                 f"{SPEARMAN_MIN:g}", fontsize=9)
    return fig


def figure_health(runs, params):
    """Every confirmation run's probe value minus its start, one colour per task."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    fig, ax = plt.subplots(figsize=plots.figsize(6, 3.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, name in enumerate(params.tasks):
        for i, r in enumerate(r for r in runs if r.task == name):
            ax.plot(r.probe_steps, np.array(r.probe_value) - r.probe_value[0], lw=0.8, alpha=0.8,
                    color=colors[j % len(colors)], label=name if i == 0 else None)
    ax.axhline(-PILOT["collapse_tolerance"], color="k", ls="--", lw=0.8)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("ΔJ on the probe prompts")
    ax.legend(fontsize=9, ncol=2)
    fig.suptitle(f"08_real_lm_impact, profile {params.profile}: every confirmation run", fontsize=9)
    return fig
