"""Value impact over a suite of at least 24 few-shot tasks in SmolLM2-135M, with held-out answers
that training never rewards and an answer-prior control arm (issue 20; notebook
``10_real_lm_task_suite``, pre-registered in ``book/10_preregistration.md``).

Notebook 08 stays as published. This successor design differs in four ways:

* **Tasks.** The 35 generated tasks of :mod:`vgh_lib.lm.suite` are screened on *training*
  prompts only: a task enters when its pre-RL pass@1 lies in the registered range
  (:func:`screen`).
* **Outcomes.** The primary outcome is the gain on held-out prompts whose answer no training
  prompt has (*unseen*), where a task has at least ``min_unseen`` of them; the secondary one is
  the gain on all held-out prompts.
* **Arms.** The GRPO arm trains the top blocks as notebook 08 did. The control arm spends the
  same budget on an output bias alone (:func:`vgh_lib.lm.grpo.output_bias`), which can shift the
  prior over answer tokens but cannot compute anything from the prompt.
* **Panel.** The pre-RL predictors are :mod:`vgh_lib.common.panel`'s, as in the toy study,
  plus a short GRPO run.

Inference (:func:`analyse`): one-sided permutation Spearman tests of ``I`` against each outcome
over the tasks; every panel predictor's Spearman with a bootstrap-over-tasks interval, and its
paired difference from ``I``'s; per-task gains with the seed variance pooled across tasks
(:func:`vgh_lib.common.impact.pooled_gains`), whose interval coverage at this design is
simulated (:func:`vgh_lib.common.impact.gain_interval_coverage`).
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from typing import ClassVar
from pathlib import Path

import numpy as np
import torch

from vgh_lib.common import panel as panel_lib
from vgh_lib.common import stats
from vgh_lib.common import impact
from vgh_lib.common.impact import TaskGain, gain_interval_coverage, largest_drop, pooled_gains
from vgh_lib.common.stats import spearman_power
from vgh_lib.common.parallel import run_jobs
from vgh_lib.errors import ParameterError
from vgh_lib.experiments.designs import TASK_SUITE_CHOSEN
from vgh_lib.experiments.grpo_budget import LMGRPOBudget
from vgh_lib.harness.claims import ClaimSpec, Measured
from vgh_lib.harness.glue import format_value
from vgh_lib.harness.params import NotebookParams, OnDevice, RealModel, Workers, spec
from vgh_lib.harness.preregistration import Registration, file_sha256, read_record  # noqa: F401 (notebook 10)
from vgh_lib.lm import costates as lm_costates
from vgh_lib.lm import grpo as lm_grpo
from vgh_lib.lm import suite
from vgh_lib.lm.cache import model_for, prefix_for
from vgh_lib.paths import REPO_ROOT

ARMS = ("grpo", "control")
OUTCOMES = ("unseen", "all", "excess")
"""``unseen``: the GRPO arm's gain on unseen-answer prompts (primary); ``all``: its gain on all
held-out prompts; ``excess``: the GRPO arm's unseen gain minus the control arm's."""

PANEL = panel_lib.PANEL + ("short RL",)

# Written down before the pilot ran (book/10_preregistration.md); none of these rules looks
# at I, S, H or any held-out value.
PILOT = {
    "seed": 0,                                  # the pilot's GRPO seed; never a confirmation seed
    "screen_prompts": 32,                       # first training prompts of the screen
    "screen_range": (0.05, 0.9),                # pre-RL training pass@1 of a task that enters
    "fallback_range": (0.02, 0.95),             # used only if fewer than 24 tasks enter
    "min_tasks": 24,
    "pass1_targets": (0.25, 0.5, 0.75),         # pilot tasks: screened pass@1 closest to these
    "grpo_lrs": (3e-3, 1e-3, 3e-4, 1e-4),       # AdamW on the top blocks
    "control_lrs": (1.0, 0.3, 0.1, 0.03),       # AdamW on the output bias
    "steps": 20,
    "collapse_tolerance": 0.05,
}
PREREGISTRATION = REPO_ROOT / "book" / "10_preregistration.md"
PILOT_FILE = REPO_ROOT / "book" / "data" / "10_pilot.json"
REGISTRATION = Registration(PREREGISTRATION, PILOT_FILE)


# ---------------------------------------------------------------------------- parameters
# Notebook 10's smoke profile: the tiny model on three tasks, a few prompts and steps. Notebook 12
# runs the same design with two more tasks (its analysis needs four) and its own seeds.
SUITE_SMOKE = {"model_path": "tiny", "target": "greedy",
               "tasks": ("add two-digit", "first letter", "capitals"),
               "screen_prompts": 3, "screen_lo": 0.0, "screen_hi": 1.0,
               "min_tasks": 3, "train_limit": 4, "unseen_limit": 3,
               "seen_limit": 1, "min_unseen": 2, "probe_prompts": 2,
               "grpo_steps": 2, "grpo_prompts": 2, "group_size": 4,
               "train_layers": 1, "probe_every": 1, "short_steps": 1,
               "signal_batches": 3, "signal_prompts": 2, "coverage_k": 16,
               "n_boot": 200, "n_perm": 200, "coverage_sims": 10, "jobs": 1}


@dataclass(frozen=True)
class TaskSuiteParams(LMGRPOBudget, RealModel, Workers, OnDevice, NotebookParams):
    """Parameters of ``10_real_lm_task_suite`` (the design of book/10_preregistration.md). The
    GRPO budget (``grpo_steps``, ``grpo_prompts``, ...) is both arms' budget."""

    # the run profiles: their overrides of the defaults below (the defaults are `default`)
    PROFILES: ClassVar[dict] = {"smoke": SUITE_SMOKE,
                                "default": {},
                                # more seeds and prompts; LoRA or all blocks would need a GPU
                                "paper": {"grpo_seeds": (1, 2, 3, 4, 5, 6, 7, 8), "train_limit": 256,
                                          "unseen_limit": 200, "seen_limit": 200, "grpo_steps": 60,
                                          "signal_prompts": 32, "device": "auto"}}

    tasks: tuple[str, ...] = spec(suite.SUITE_TASKS, choices=suite.SUITE_TASKS,
                                  help="the candidate tasks, before the screen")
    screen_prompts: int = spec(PILOT["screen_prompts"], lo=1, hi=100_000,
                               help="first training prompts of the screen's pass@1")
    screen_lo: float = spec(PILOT["screen_range"][0], lo=0.0, hi=1.0, help="screen: lowest pass@1")
    screen_hi: float = spec(PILOT["screen_range"][1], lo=0.0, hi=1.0, help="screen: highest pass@1")
    min_tasks: int = spec(PILOT["min_tasks"], lo=3, hi=1000,
                          help="below this many screened tasks the fallback range applies")
    train_limit: int = spec(64, lo=2, hi=100_000, help="training prompts per task (GRPO, S, panel)")
    unseen_limit: int = spec(64, lo=1, hi=100_000, help="unseen-answer held-out prompts per task")
    seen_limit: int = spec(64, lo=0, hi=100_000, help="seen-answer held-out prompts per task")
    min_unseen: int = spec(16, lo=1, hi=100_000, help="unseen prompts a task needs for the primary outcome")
    probe_prompts: int = spec(12, lo=1, hi=100_000, help="training prompts of the exact probe value")
    grpo_lr: float = spec(TASK_SUITE_CHOSEN["grpo_lr"], lo=1e-8, hi=10.0,
                          help="AdamW learning rate of the GRPO arm (chosen on the pilot)")
    control_lr: float = spec(TASK_SUITE_CHOSEN["control_lr"], lo=1e-8, hi=10.0,
                             help="AdamW learning rate of the control arm (chosen on the pilot)")
    grpo_seeds: tuple[int, ...] = spec((1, 2), lo=1, hi=2**31 - 1,
                                  help="GRPO seeds of both arms (seed 0 is the pilot's)")
    short_steps: int = spec(4, lo=1, hi=100_000, help="steps of the short-RL predictor's run")
    short_seed: int = spec(1000, lo=1, hi=2**31 - 1, help="GRPO seed of the short run")
    signal_batches: int = spec(8, lo=3, hi=1000, help="independent batches of the signal S")
    signal_prompts: int = spec(8, lo=1, hi=100_000, help="distinct prompts per batch of the signal S")
    k: int = spec(8, lo=1, hi=1024, help="the k of pass@k in the headroom H")
    coverage_k: int = spec(64, lo=1, hi=100_000, help="K of the coverage predictor pass@K")
    n_boot: int = spec(2000, lo=100, hi=1_000_000, help="bootstrap resamples")
    n_perm: int = spec(10_000, lo=100, hi=10_000_000, help="permutations of each Spearman test")
    coverage_sims: int = spec(400, lo=10, hi=100_000, help="simulated designs of the coverage check")
    pilot: bool = spec(False, help="rerun the pilot and compare its choice with the committed design")

    def check(self) -> None:
        if len(set(self.tasks)) != len(self.tasks):
            raise ParameterError(f"parameter 'tasks' repeats a task: {self.tasks}")
        if len(self.tasks) < 3:
            raise ParameterError(f"parameter 'tasks' needs at least 3 tasks, got {len(self.tasks)}")
        if self.screen_lo >= self.screen_hi:
            raise ParameterError(f"parameter 'screen_lo' = {self.screen_lo} must be below "
                                 f"'screen_hi' = {self.screen_hi}")
        if len(self.grpo_seeds) < 2 or len(set(self.grpo_seeds)) != len(self.grpo_seeds):
            raise ParameterError(f"parameter 'grpo_seeds' needs at least 2 distinct seeds, got {self.grpo_seeds}")
        if PILOT["seed"] in self.grpo_seeds or self.short_seed in self.grpo_seeds:
            raise ParameterError(f"parameter 'grpo_seeds' {self.grpo_seeds} must not contain the pilot's seed "
                                 f"{PILOT['seed']} or 'short_seed' = {self.short_seed}")
        if self.signal_prompts > self.train_limit:
            raise ParameterError(f"parameter 'signal_prompts' = {self.signal_prompts} must be at most "
                                 f"'train_limit' = {self.train_limit}")

    def design(self) -> "SuiteDesign":
        names = [f.name for f in SuiteDesign.__dataclass_fields__.values()]
        return SuiteDesign(**{n: getattr(self, n) for n in names})


@dataclass(frozen=True, kw_only=True)
class SuiteDesign(LMGRPOBudget):
    """Everything a job needs besides its task, arm, learning rate and seed; its GRPO budget is
    the parameters' own (:class:`~vgh_lib.experiments.grpo_budget.LMGRPOBudget`)."""

    model_path: str
    target: str
    train_limit: int
    unseen_limit: int
    seen_limit: int
    probe_prompts: int
    signal_batches: int
    signal_prompts: int
    short_steps: int
    short_seed: int
    screen_prompts: int
    device: str = "cpu"


# -------------------------------------------------------------------------------- prompts
@functools.lru_cache(maxsize=None)
def task_split(task: str) -> suite.Split:
    """``task``'s training, unseen-answer and seen-answer prompts (:func:`vgh_lib.lm.suite.split`),
    built once per process; notebook 12 reads it too."""
    return suite.split(task)


@dataclass
class TaskPrompts:
    """A task's (prompt ids, answer ids) pairs: training, unseen-answer and seen-answer held out."""

    train: list
    unseen: list
    seen: list

    @property
    def held_out(self) -> list:
        return self.unseen + self.seen


def prompts(model, tokenizer, task: str, design: SuiteDesign, train_limit: int | None = None) -> TaskPrompts:
    """The first prompts of each list of ``task``'s split (suite order). With ``target="greedy"``
    each answer is replaced by the model's own greedy answer of the same length (a reward that
    the smoke profile's tiny random llama can earn)."""
    s = task_split(task)
    device = next(model.parameters()).device

    def enc(examples):
        pairs = lm_grpo.encode(tokenizer, examples, device)
        if design.target == "greedy":
            pairs = lm_costates.greedy_targets(model, pairs)
        return pairs

    return TaskPrompts(enc(s.train[:train_limit or design.train_limit]),
                       enc(s.unseen[:design.unseen_limit]), enc(s.seen[:design.seen_limit]))


# ----------------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class ScreenJob:
    """The pre-RL pass@1 of one task on its first ``screen_prompts`` training prompts."""

    design: SuiteDesign
    task: str

    def paths(self) -> tuple[str, ...]:
        return (self.design.model_path,)


def run_screen(job: ScreenJob) -> float:
    torch.set_num_threads(1)
    d = job.design
    model, tok = model_for(d.model_path, d.device)
    p = prompts(model, tok, job.task, d, train_limit=d.screen_prompts)
    return float(lm_grpo.exact_values(model, p.train, prefix=prefix_for(d.model_path, d.device,
                                                                       d.train_layers)).mean())


@dataclass(frozen=True)
class ArmJob:
    """One run of one arm on one task. ``held_out=False`` (the pilot) records only the probe
    curve on training prompts, so the pilot never sees a held-out value."""

    design: SuiteDesign
    task: str
    arm: str
    lr: float
    seed: int
    held_out: bool = True

    def __post_init__(self):
        if self.arm not in ARMS:
            raise ValueError(f"arm must be one of {ARMS}, got {self.arm!r}")

    def paths(self) -> tuple[str, ...]:
        return (self.design.model_path,)


@dataclass
class ArmRun:
    """One run: exact held-out values before and after (unseen first, then seen), the probe."""

    task: str
    arm: str
    lr: float
    seed: int
    n_unseen: int
    before: np.ndarray
    after: np.ndarray
    probe_steps: list[int]
    probe_value: list[float]
    seconds: float

    @property
    def gains(self) -> np.ndarray:
        return self.after - self.before

    @property
    def largest_drop(self) -> float:
        return largest_drop(self.probe_value)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["before"], d["after"] = self.before.tolist(), self.after.tolist()
        return d


def run_arm(job: ArmJob) -> ArmRun:
    """One run of ``job.arm`` on one thread; the process's cached model is left as it was."""
    torch.set_num_threads(1)
    d = job.design
    model, tok = model_for(d.model_path, d.device)
    p = prompts(model, tok, job.task, d)
    held = p.held_out if job.held_out else []
    prefix = prefix_for(d.model_path, d.device, d.train_layers)
    cfg = d.grpo_config(lr=job.lr, seed=job.seed)
    t0 = time.perf_counter()
    with lm_grpo.restored(lm_grpo.top_parameters(model, d.train_layers)):
        before = lm_grpo.exact_values(model, held, prefix=prefix)
        if job.arm == "grpo":
            history = lm_grpo.train(model, p.train, p.train[:d.probe_prompts], cfg, prefix=prefix)
            after = lm_grpo.exact_values(model, held, prefix=prefix)
        else:
            with lm_grpo.output_bias(model) as bias:
                history = lm_grpo.train(model, p.train, p.train[:d.probe_prompts], cfg, prefix=prefix,
                                        params=[bias])
                after = lm_grpo.exact_values(model, held, prefix=prefix)
    return ArmRun(job.task, job.arm, job.lr, job.seed, len(p.unseen) if job.held_out else 0,
                  np.asarray(before, float), np.asarray(after, float), history.probe_steps,
                  history.probe_value, time.perf_counter() - t0)


@dataclass(frozen=True)
class PanelJob:
    """The pre-RL panel of one task; ``lr`` is the GRPO arm's (the short run's)."""

    design: SuiteDesign
    task: str
    lr: float
    seed: int
    k: int
    coverage_k: int

    def paths(self) -> tuple[str, ...]:
        return (self.design.model_path,)


@dataclass
class TaskPanel:
    """What :func:`run_panel` measured on one task before RL."""

    task: str
    panel: panel_lib.Panel
    short_gain: float
    short_seconds: float
    n_train: int
    seconds: float

    def value(self, name: str) -> float:
        return self.short_gain if name == "short RL" else self.panel.values[name]

    def se(self, name: str) -> float:
        return float("nan") if name == "short RL" else self.panel.ses[name]


def run_panel(job: PanelJob) -> TaskPanel:
    """The panel on the task's training prompts: every exact predictor from their teacher-forced
    answer probabilities, S from independent update batches (:func:`vgh_lib.lm.grpo.signal_gram`),
    and NLL from the held-out prompts' (the issue's "held-out NLL of the correct answers"); the
    short run's gain is the mean exact value of the training prompts after ``short_steps``
    GRPO steps minus before (no held-out prompt is touched)."""
    torch.set_num_threads(1)
    d = job.design
    model, tok = model_for(d.model_path, d.device)
    p = prompts(model, tok, job.task, d)
    prefix = prefix_for(d.model_path, d.device, d.train_layers)
    t0 = time.perf_counter()
    if prefix is not None:   # the training prompts' states first: GRPO needs them anyway
        prefix.warm([x for x, _ in p.train])
    values = lm_grpo.exact_values(model, p.train, prefix=prefix)
    held = lm_grpo.exact_values(model, p.held_out, prefix=prefix)
    eval_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    gram = lm_grpo.signal_gram(model, p.train, d.signal_batches, min(d.signal_prompts, len(p.train)),
                               d.group_size, 1.0, d.train_layers, job.seed, prefix)
    signal_seconds = time.perf_counter() - t1
    logp = np.log(np.clip(values, 1e-300, 1.0))
    pan = panel_lib.panel(logp, gram, d.group_size, job.k, job.coverage_k, eval_seconds, signal_seconds)
    nll = panel_lib.per_prompt(np.log(np.clip(held, 1e-300, 1.0)), d.group_size, job.k)["NLL"]
    pan.values["NLL"], pan.ses["NLL"] = panel_lib.mean_se(nll)
    t2 = time.perf_counter()
    with lm_grpo.restored(lm_grpo.top_parameters(model, d.train_layers)):
        short_run = d.grpo_config(lr=job.lr, seed=d.short_seed, steps=d.short_steps)
        lm_grpo.train(model, p.train, p.train[:1], short_run, prefix=prefix)
        short = float(lm_grpo.exact_values(model, p.train, prefix=prefix).mean() - values.mean())
    short_seconds = time.perf_counter() - t2
    return TaskPanel(job.task, pan, short, short_seconds, len(p.train), time.perf_counter() - t0)


# -------------------------------------------------------------- the pre-registered rules
def screen(pass1: dict[str, float], lo: float, hi: float, min_tasks: int = PILOT["min_tasks"],
           fallback=PILOT["fallback_range"]) -> tuple[list[str], tuple[float, float]]:
    """The tasks whose screened pass@1 lies in [lo, hi] (in the order of ``pass1``) and the
    range used; when fewer than ``min_tasks`` enter, the wider ``fallback`` range applies
    (and the claims run on however many enter)."""
    chosen = [t for t, v in pass1.items() if lo <= v <= hi]
    if len(chosen) >= min_tasks or fallback is None:
        return chosen, (lo, hi)
    wide = (min(lo, fallback[0]), max(hi, fallback[1]))
    return [t for t, v in pass1.items() if wide[0] <= v <= wide[1]], wide


def pilot_tasks(pass1: dict[str, float], targets=PILOT["pass1_targets"]) -> list[str]:
    """The screened tasks whose pass@1 is closest to each target (distinct, in task order)."""
    names = list(pass1)
    return [names[i] for i in impact.pilot_checkpoints([pass1[n] for n in names], targets)]


def choose_lrs(runs: list[ArmRun], tolerance: float = PILOT["collapse_tolerance"]) -> dict[str, float]:
    """Per arm, the largest learning rate whose probe value never fell more than ``tolerance``
    below its start on any pilot task (:func:`vgh_lib.common.impact.choose_lr`)."""
    out = {}
    for arm in ARMS:
        drops: dict[float, list[float]] = {}
        for r in runs:
            if r.arm == arm:
                drops.setdefault(r.lr, []).append(r.largest_drop)
        if drops:
            out[arm] = impact.choose_lr(drops, tolerance)
    return out


# ------------------------------------------------------------------------------ inference
def _per_task(runs: list[ArmRun], task: str, arm: str, outcome: str) -> np.ndarray:
    """(seeds, prompts) gains of one task and arm on ``unseen`` or ``all`` prompts."""
    mine = sorted((r for r in runs if r.task == task and r.arm == arm), key=lambda r: r.seed)
    if not mine:
        raise ValueError(f"no {arm} runs on task {task!r}")
    g = np.stack([r.gains for r in mine])
    return g[:, :mine[0].n_unseen] if outcome == "unseen" else g


def gain_matrix(runs: list[ArmRun], task: str, outcome: str) -> np.ndarray:
    """(seeds, prompts) gains of ``outcome`` on one task (the ``excess`` pairs the arms' seeds
    in seed order: both arms ran the same seeds, independently)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    if outcome == "excess":
        return _per_task(runs, task, "grpo", "unseen") - _per_task(runs, task, "control", "unseen")
    return _per_task(runs, task, "grpo", outcome)


@dataclass
class OutcomeAnalysis:
    """One outcome over its tasks: the gains, every predictor's correlation and its paired
    difference from I."""

    outcome: str
    tasks: list[str]
    gains: list[TaskGain]
    df: int
    correlations: dict[str, impact.RankCorrelation]
    lead_of_i: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # P -> impact.rank_lead

    @property
    def winner(self) -> str:
        return max(self.correlations, key=lambda n: abs(self.correlations[n].value))

    @property
    def beaten_by(self) -> list[str]:
        """Predictors whose paired interval lies entirely below 0 (they rank the gains better
        than I, beyond the tasks' sampling error)."""
        return [n for n, (_, _, hi) in self.lead_of_i.items() if hi < 0]


def analyse_outcome(outcome: str, tasks: list[str], panels: dict[str, TaskPanel], runs: list[ArmRun],
                    n_boot: int, n_perm: int, seed: int) -> OutcomeAnalysis:
    gains, df = pooled_gains({t: gain_matrix(runs, t, outcome) for t in tasks})
    y = np.array([g.mean for g in gains])
    x = {n: np.array([panels[t].value(n) for t in tasks]) for n in PANEL}
    corr = {n: impact.rank_correlation(x[n], y, n_boot, n_perm, seed) for n in PANEL}
    versus = {n: impact.rank_lead(x["I"], x[n], y, n_boot, seed + 7) for n in PANEL if n != "I"}
    return OutcomeAnalysis(outcome, list(tasks), gains, df, corr, versus)


def eligible(tasks: list[str], runs: list[ArmRun], min_unseen: int) -> list[str]:
    """The tasks with at least ``min_unseen`` unseen-answer held-out prompts (primary outcome)."""
    n = {r.task: r.n_unseen for r in runs}
    return [t for t in tasks if n.get(t, 0) >= min_unseen]


def analyse(tasks: list[str], panels: list[TaskPanel], runs: list[ArmRun], params: TaskSuiteParams
            ) -> dict[str, OutcomeAnalysis]:
    """Every outcome: ``unseen`` and ``excess`` over the eligible tasks, ``all`` over every task."""
    by_task = {p.task: p for p in panels}
    primary = eligible(tasks, runs, params.min_unseen)
    out = {}
    for outcome, names in (("unseen", primary), ("all", list(tasks)), ("excess", primary)):
        if len(names) >= 3:
            out[outcome] = analyse_outcome(outcome, names, by_task, runs, params.n_boot, params.n_perm,
                                           params.seed)
    return out


def gained_from_rl(excess: OutcomeAnalysis) -> list[str]:
    """Tasks whose GRPO arm beats the control on unseen-answer prompts: the excess gain's
    interval lies above 0."""
    return [g.task for g in excess.gains if g.lo > 0]


# --------------------------------------------------------------------------- the study
def screen_tasks(params: TaskSuiteParams) -> dict[str, float]:
    """Every candidate task's pre-RL pass@1 on its first ``screen_prompts`` training prompts."""
    d = params.design()
    values = run_jobs(run_screen, [ScreenJob(d, t) for t in params.tasks], params.jobs, desc="screen")
    return dict(zip(params.tasks, values))


def run_pilot(params: TaskSuiteParams, progress: bool = True) -> dict:
    """The pre-registered pilot: the screen, the pilot tasks, and one ``PILOT["steps"]``-step
    run per arm and learning rate on each (GRPO seed 0, probe curves only). Returns the raw
    outputs as a JSON-ready dict (``book/data/10_pilot.json``)."""
    pass1 = screen_tasks(params)
    chosen, used = screen(pass1, params.screen_lo, params.screen_hi, params.min_tasks)
    names = pilot_tasks({t: pass1[t] for t in chosen})
    d = params.design()
    jobs = [ArmJob(d, t, arm, lr, PILOT["seed"], held_out=False)
            for t in names for arm in ARMS for lr in PILOT[f"{arm}_lrs"]]
    runs = run_jobs(run_arm, jobs, params.jobs, progress=progress, desc="pilot runs")
    lrs = choose_lrs(runs)
    return REGISTRATION.pilot_record({
            "rules": {k: list(v) if isinstance(v, tuple) else v for k, v in PILOT.items()},
            "screen": pass1, "screen_range": list(used), "tasks": chosen, "pilot_tasks": names,
            "runs": [{k: v for k, v in r.as_dict().items() if k not in ("before", "after", "n_unseen")}
                     for r in runs],
            "chosen": lrs})


def load_pilot(path: Path = PILOT_FILE) -> dict:
    """The committed pilot outputs, checked against the registered text they name."""
    return REGISTRATION.load_pilot(path)


UNSEEN_SEEDS_FILE = REPO_ROOT / "book" / "data" / "10_unseen_seeds.claims.json"


def load_unseen_seeds(path: Path = UNSEEN_SEEDS_FILE) -> dict | None:
    """The claims file of the run on GRPO seeds that no earlier run used (made after the
    confirmation, committed whatever it showed), or None where there is none."""
    data = read_record(path)
    if data is None:
        return None
    if data.get("notebook") != "10_real_lm_task_suite":
        raise ValueError(f"{path} is not a claims file of notebook 10")
    return data


def unseen_seeds_table(unseen: dict) -> tuple[list[str], list[list[str]]]:
    """The committed run on GRPO seeds nobody tuned on: each of its claims, value and verdict."""
    seeds = ", ".join(map(str, unseen["parameters"]["grpo_seeds"]))
    return (["claim", f"seeds {seeds}", "verdict"],
            [[c["id"], format_value(c["value"]), "holds" if c["passed"] else "fails"] for c in unseen["claims"]])


def pilot_rerun_table(committed: dict, rerun: dict) -> tuple[list[str], list[list[str]]]:
    """What the pilot's rules choose on this machine's rerun (:func:`run_pilot`) beside the
    committed design and the committed pilot file ``committed``."""
    chosen = rerun["chosen"]
    return (["rule's choice", "committed design", "this machine's rerun"],
            [["GRPO arm's rate", format_value(TASK_SUITE_CHOSEN["grpo_lr"]), format_value(chosen["grpo"])],
             ["control arm's rate", format_value(TASK_SUITE_CHOSEN["control_lr"]), format_value(chosen["control"])],
             ["entered tasks", str(len(TASK_SUITE_CHOSEN["tasks"])), str(len(rerun["tasks"]))],
             ["pilot tasks", ", ".join(committed["pilot_tasks"]), ", ".join(rerun["pilot_tasks"])]])


def unseen_seeds_replication(unseen: dict) -> tuple[str, str]:
    """The committed run on GRPO seeds nobody tuned on (:func:`load_unseen_seeds`) as a
    registered replication of the primary claim: the run's name and its own verdict."""
    claim = {c["id"]: c for c in unseen["claims"]}["p10.unseen.p"]
    seeds = ", ".join(map(str, unseen["parameters"]["grpo_seeds"]))
    return (f"GRPO seeds {seeds} nobody tuned on",
            f"{'holds' if claim['passed'] else 'does not hold'} (p = {format_value(claim['value'])})")


def check_design(pilot: dict, chosen: dict, pilot_file: Path = PILOT_FILE) -> None:
    """Raise unless the committed design names the pilot file it was read from and agrees
    with the rates the pilot's rule chose."""
    REGISTRATION.check_design(chosen, pilot_file)
    for arm in ARMS:
        if chosen[f"{arm}_lr"] != pilot["chosen"][arm]:
            raise ValueError(f"the committed {arm} rate {chosen[f'{arm}_lr']} is not the pilot's "
                             f"{pilot['chosen'][arm]}")


def run_panels(params: TaskSuiteParams, tasks: list[str]) -> list[TaskPanel]:
    d = params.design()
    jobs = [PanelJob(d, t, params.grpo_lr, params.seed, params.k, params.coverage_k) for t in tasks]
    return run_jobs(run_panel, jobs, params.jobs, desc="panel")


def run_arms(params: TaskSuiteParams, tasks: list[str], seeds=None) -> list[ArmRun]:
    """Both arms on every task with every seed (task-major, so a worker's prompt caches serve
    consecutive jobs)."""
    d = params.design()
    lr = {"grpo": params.grpo_lr, "control": params.control_lr}
    jobs = [ArmJob(d, t, arm, lr[arm], s) for t in tasks for s in (seeds or params.grpo_seeds) for arm in ARMS]
    return run_jobs(run_arm, jobs, params.jobs, desc="GRPO and control runs")


@dataclass(frozen=True)
class TaskJob:
    """All of one task's work in one worker: its panel, then both arms with every seed, in the
    order of :func:`run_arms`. Each piece is seeded on its own, so the results are those of
    :func:`run_panels` and :func:`run_arms`; only the frozen bottom blocks' states of the task's
    prompts are computed once instead of once per worker that meets the task."""

    panel: PanelJob
    arms: tuple[ArmJob, ...]

    def paths(self) -> tuple[str, ...]:
        return self.panel.paths()


def run_task(job: TaskJob) -> tuple[TaskPanel, list[ArmRun]]:
    d = job.panel.design
    prefix = prefix_for(d.model_path, d.device, d.train_layers)
    if prefix is not None:
        prefix.clear()      # the last task's states are of no use here; bound the memory
    return run_panel(job.panel), [run_arm(a) for a in job.arms]


def run_study(params: TaskSuiteParams, tasks: list[str], seeds=None
              ) -> tuple[list[TaskPanel], list[ArmRun]]:
    """:func:`run_panels` and :func:`run_arms` together, one job per task (:class:`TaskJob`)."""
    d = params.design()
    lr = {"grpo": params.grpo_lr, "control": params.control_lr}
    jobs = [TaskJob(PanelJob(d, t, params.grpo_lr, params.seed, params.k, params.coverage_k),
                    tuple(ArmJob(d, t, arm, lr[arm], s) for s in (seeds or params.grpo_seeds) for arm in ARMS))
            for t in tasks]
    done = run_jobs(run_task, jobs, params.jobs, desc="tasks (panel, both arms, every seed)")
    return [panel for panel, _ in done], [run for _, runs in done for run in runs]


# ------------------------------------------------------------------- what notebook 10 shows
def is_committed_design(params: TaskSuiteParams) -> bool:
    """Whether ``params`` ask for the committed design's model and candidates (then the entered
    tasks are the committed ones, not a fresh screen's)."""
    return (params.model_path == "smollm2" and params.target == "task"
            and set(params.tasks) == set(suite.SUITE_TASKS))


TASK_TABLE_HEADERS = ["task", "family", "screened pass@1", "entered", "training prompts",
                      "unseen held out (used of all)", "seen held out (used of all)",
                      "held-out answers also in training", "primary outcome"]


def task_table(params: TaskSuiteParams, pass1: dict[str, float], entered: list[str]
               ) -> tuple[list[list[str]], list[int]]:
    """One row per candidate task (:data:`TASK_TABLE_HEADERS`) and each entered task's number
    of held-out prompts used."""
    rows, held = [], []
    for t in params.tasks:
        c = suite.describe(t)
        unseen, seen = min(c.unseen, params.unseen_limit), min(c.seen, params.seen_limit)
        rows.append([t, c.family, f"{pass1[t]:.3f}", "yes" if t in entered else "no", str(c.train),
                     f"{unseen} of {c.unseen}", f"{seen} of {c.seen}", f"{100 * c.seen_share:.0f} %",
                     "yes" if t in entered and unseen >= params.min_unseen else "no"])
        if t in entered:
            held.append(unseen + seen)
    return rows, held


def trained_parameters(params: TaskSuiteParams) -> tuple[int, int, int]:
    """Parameters that the GRPO arm trains, that the control arm trains (the output bias: one
    per vocabulary entry), and in all."""
    model, _ = model_for(params.model_path, params.device)
    return (sum(p.numel() for p in lm_grpo.top_parameters(model, params.train_layers)),
            int(model.get_output_embeddings().weight.shape[0]),
            sum(p.numel() for p in model.parameters()))


def control_gains(runs: list[ArmRun], tasks: list[str]) -> dict[str, TaskGain]:
    """The control arm's unseen-answer gain per task, with the same pooled intervals."""
    gains, _ = pooled_gains({t: _per_task(runs, t, "control", "unseen") for t in tasks})
    return {g.task: g for g in gains}


def cost_ratio(panels: list[TaskPanel], runs: list[ArmRun], name: str) -> float:
    """Mean seconds of what predictor ``name`` needs, as a fraction of one GRPO-arm run."""
    grpo_seconds = float(np.mean([r.seconds for r in runs if r.arm == "grpo"]))
    per_task = [p.short_seconds if name == "short RL" else p.panel.cost[name] for p in panels]
    return float(np.mean(per_task)) / grpo_seconds


def power_at(n: int) -> tuple[float, dict[float, float]]:
    """The critical Spearman at ``n`` tasks and the primary test's power there
    (:func:`vgh_lib.common.stats.spearman_power`, the pre-registration's simulation)."""
    return stats.spearman_critical(n), spearman_power(n)


def coverage_at_design(runs: list[ArmRun], tasks: list[str], n_seeds: int, n_sims: int, seed: int) -> float:
    """:func:`vgh_lib.common.impact.gain_interval_coverage` driven by each task's own seed and prompt standard
    deviations of the unseen gain (exploratory: how well the pooled intervals cover here)."""
    mats = [gain_matrix(runs, t, "unseen") for t in tasks]
    seed_sd = [m.mean(axis=1).std(ddof=1) for m in mats]
    prompt_sd = [m.mean(axis=0).std(ddof=1) if m.shape[1] > 1 else 0.0 for m in mats]
    return gain_interval_coverage(seed_sd, prompt_sd, n_seeds, [m.shape[1] for m in mats], n_sims, seed)


def collapsed(runs: list[ArmRun], tolerance: float = PILOT["collapse_tolerance"]) -> list[ArmRun]:
    """The runs whose probe value fell more than ``tolerance`` below its start."""
    return [r for r in runs if r.largest_drop > tolerance]


IMPACT_PANELS = (("unseen", "GRPO gain, unseen answers"), ("excess", "GRPO − control, unseen answers"))


def impact_figure(res: dict[str, OutcomeAnalysis], panels: list[TaskPanel]):
    """Each task's gain (with its pooled interval) against its value impact before RL, one
    panel per outcome of :data:`IMPACT_PANELS` that was analysed; every point is labelled with
    its task."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    shown = [(o, label) for o, label in IMPACT_PANELS if o in res]
    impact = {p.task: p.value("I") for p in panels}
    fig, axes = plt.subplots(1, len(shown), figsize=plots.figsize(6.5 * len(shown), 5.5), squeeze=False)
    for ax, (outcome, label) in zip(axes[0], shown):
        a = res[outcome]
        x = np.array([impact[t] for t in a.tasks])
        m = np.array([g.mean for g in a.gains])
        ax.errorbar(x, m, yerr=[m - np.array([g.lo for g in a.gains]), np.array([g.hi for g in a.gains]) - m],
                    fmt="o", ms=4, lw=0.8, capsize=2, color="0.35")
        ax.set_xscale("log")
        ax.axhline(0, color="0.5", lw=0.8)
        plots.label_points(ax, x, m, a.tasks)
        c = a.correlations["I"]
        ax.set_title(f"Spearman {c.value:+.2f}, p = {c.p:.3g}", fontsize=9)
        ax.set_xlabel("value impact $I = S \\cdot H$ before RL")
        ax.set_ylabel(label)
    return fig


PANEL_TABLE_HEADERS = ["predictor", "ρ with unseen gain [95 % CI]", "p (one-sided)", "ρ with all held-out gain",
                       "ρ with GRPO − control", "ρ(I) − |ρ(P)| [95 % CI]", "cost / GRPO run"]


def panel_order(unseen: OutcomeAnalysis) -> list[str]:
    """The predictors, best by |ρ| with the unseen-answer gain first."""
    return sorted(PANEL, key=lambda n: -abs(unseen.correlations[n].value))


def panel_rows(res: dict[str, OutcomeAnalysis], panels: list[TaskPanel], runs: list[ArmRun]
               ) -> list[list[str]]:
    """One row of :data:`PANEL_TABLE_HEADERS` per predictor (an outcome not analysed reads —)."""
    from vgh_lib.harness.glue import interval_text

    def cell(outcome, n):
        if outcome not in res:
            return "—"
        c = res[outcome].correlations[n]
        return interval_text(c.value, c.lo, c.hi)

    u = res["unseen"]
    return [[n, cell("unseen", n), f"{u.correlations[n].p:.3g}", cell("all", n), cell("excess", n),
             "—" if n == "I" else interval_text(*u.lead_of_i[n]), f"{cost_ratio(panels, runs, n):.3g}"]
            for n in panel_order(u)]


# ------------------------------------------------------------------------------ the claims
# Registered in book/10_preregistration.md before the confirmation ran.
ALPHA = 0.05

CLAIMS = (
    ClaimSpec("p10.unseen.p", "Spearman(I, GRPO gain on unseen-answer prompts) over {n_primary} tasks "
              "is positive (ρ = {rho:+.2f}); one-sided permutation p", "<=", ALPHA, kind="empirical",
              fails_if="I does not rank the tasks by their gain on answers training never rewarded"),
    ClaimSpec("p10.all.p", "the same for the gain on all held-out prompts over {n_tasks} tasks "
              "(ρ = {rho:+.2f})", "<=", ALPHA, kind="empirical",
              fails_if="I does not rank the tasks by their held-out gain"),
    ClaimSpec("p10.excess.p", "the same for the GRPO arm's unseen gain minus the answer-prior control's "
              "(ρ = {rho:+.2f})", "<=", ALPHA, kind="empirical",
              fails_if="what I predicts is explained by a shift of the answer prior"),
    ClaimSpec("p10.not_beaten", "panel predictors whose paired interval of ρ(I) − |ρ(P)| lies entirely "
              "below 0 on the primary outcome", "<=", 0.0, kind="empirical",
              fails_if="a cheap predictor ranks the gains better than I beyond the tasks' sampling error"),
)


def claim_values(res: dict[str, OutcomeAnalysis]) -> dict[str, Measured]:
    """What notebook 10 measured for each of :data:`CLAIMS`."""
    c = {o: res[o].correlations["I"] for o in res}
    return {"p10.unseen.p": Measured(c["unseen"].p, fields={"n_primary": len(res["unseen"].tasks),
                                                            "rho": c["unseen"].value}),
            "p10.all.p": Measured(c["all"].p, fields={"n_tasks": len(res["all"].tasks), "rho": c["all"].value}),
            "p10.excess.p": Measured(c["excess"].p, fields={"rho": c["excess"].value}),
            "p10.not_beaten": Measured(float(len(res["unseen"].beaten_by)))}


def finding(res: dict[str, OutcomeAnalysis], gained: list[str]) -> str:
    """The landing page's one line for this run."""
    u = res["unseen"]
    c, winner = u.correlations["I"], u.winner
    return (f"Spearman(I, unseen-answer gain) {c.value:+.2f} over {len(u.tasks)} tasks "
            f"(p = {c.p:.2g}); best by |ρ|: {winner} ({u.correlations[winner].value:+.2f}); "
            f"GRPO beat the answer-prior control on {len(gained)} of {len(u.tasks)} tasks")


def figure_arms(primary, gain_of, control_of):
    """Per primary-outcome task, ordered by the GRPO arm's gain: both arms' unseen-answer gains
    with their pooled 95 % intervals."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    order = sorted(primary, key=lambda t: gain_of["unseen"][t].mean)
    fig, ax = plt.subplots(figsize=plots.figsize(7.5, 0.32 * len(order) + 1.4))
    yy = np.arange(len(order))
    for off, (label, src) in zip((-0.17, 0.17), (("GRPO arm", gain_of["unseen"]), ("control arm", control_of))):
        m = np.array([src[t].mean for t in order])
        lo = np.array([src[t].lo for t in order])
        hi = np.array([src[t].hi for t in order])
        ax.errorbar(m, yy + off, xerr=[m - lo, hi - m], fmt="o", ms=3.5, lw=1, capsize=2, label=label)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_yticks(yy, order)
    ax.set_xlabel("gain on unseen-answer held-out prompts (95 % CI)")
    ax.legend(loc="lower right")
    return fig


def figure_pilot(pilot_data):
    """The pilot's runs per arm (rows) and pilot task (columns): probe value minus its start, one
    line per learning rate; dashed: the collapse tolerance."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    names = pilot_data["pilot_tasks"]
    fig, axes = plt.subplots(2, len(names), figsize=plots.figsize(3.6 * len(names), 5.6), sharey="row", squeeze=False)
    for row, arm in enumerate(ARMS):
        lrs = PILOT[f"{arm}_lrs"]
        for col, name in enumerate(names):
            ax = axes[row, col]
            for run in (r for r in pilot_data["runs"] if r["task"] == name and r["arm"] == arm):
                v = np.array(run["probe_value"])
                ax.plot(run["probe_steps"], v - v[0], "o-", ms=3, lw=1,
                        color=plots.palette(len(lrs))[lrs.index(run["lr"])], label=f"lr {run['lr']:g}")
            ax.axhline(-PILOT["collapse_tolerance"], color="0.4", ls="--", lw=0.8)
            ax.set_title(f"{arm}: {name}")
            ax.set_xlabel("GRPO step")
        axes[row, 0].set_ylabel("probe value − start")
        axes[row, -1].legend(loc="best")
    return fig


ARMS_TABLE_HEADERS = ["task", "GRPO, unseen", "control, unseen", "GRPO − control, unseen",
                      "GRPO, all held out", "gained from RL"]


def arms_rows(tasks: list[str], gain_of: dict[str, dict[str, TaskGain]], control_of: dict[str, TaskGain],
              gained: list[str]) -> list[list[str]]:
    """One row of :data:`ARMS_TABLE_HEADERS` per task: each arm's gain with its interval (— where
    an outcome does not cover the task)."""
    def cell(g):
        return "—" if g is None else f"{g.mean:+.3f} [{g.lo:+.3f}, {g.hi:+.3f}]"

    return [[t, cell(gain_of["unseen"].get(t)), cell(control_of.get(t)), cell(gain_of["excess"].get(t)),
             cell(gain_of["all"][t]), "yes" if t in gained else "no"] for t in tasks]
