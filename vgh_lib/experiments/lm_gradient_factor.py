"""Notebook ``12_lm_gradient_factor``: does the gradient factor of ``I = S·H`` (the part that is
not a function of success rates) predict the gain of RL in SmolLM2-135M beyond reward-std?
(issue 31; the design is pre-registered in ``book/12_preregistration.md``).

The design points are notebook 10's committed tasks, split, learning rates and panel. What is
new, measured on each task's training prompts before any RL:

* the **exact signal** ``S = ‖g‖`` of the expected GRPO update of the trained blocks,
  ``g = (1/N) Σ_x a_G(p_x) ∇p_x`` (:func:`vgh_lib.lm.grpo.exact_signal`, one teacher-forced
  backward pass a prompt, no sampling), its **self** and **alignment** terms, and exact
  ``I = S·H``;
* the **AdamW signal** ``Σ_j (E g_j)² / sqrt(E g_j²)``, the second moment from sampled GRPO
  updates of one optimizer step (:func:`vgh_lib.lm.grpo.update_estimates`).

The outcome is the GRPO arm's mean gain on held-out prompts whose answer no training prompt has
(10's primary outcome), with at least 6 GRPO seeds per task and its split-half reliability
across tasks. Across tasks the design points are exchangeable, so the primary test is the
partial rank association of exact S with the gain given reward-std
(:func:`partial_rank_test`), by a Freedman–Lane permutation over all tasks.

This module imports notebook 10's module on purpose: the tasks, prompts, panel and GRPO arms
are 10's, re-measured here with more seeds, not a second copy of them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import numpy as np
import torch

from vgh_lib.common import prediction, stats
from vgh_lib.common.exact_signal import adamw_signal
from vgh_lib.common.parallel import run_jobs
from vgh_lib.errors import ParameterError
from vgh_lib.experiments import real_lm_task_suite as design10
from vgh_lib.experiments.designs import LM_GRADIENT_CHOSEN
from vgh_lib.harness.claims import ClaimSpec, Measured
from vgh_lib.harness.params import spec
from vgh_lib.harness.preregistration import Registration, write_json
# the same tests, verdicts and wording as notebook 11's study (the notebook reads them here)
from vgh_lib.harness.verdicts import NOT_SHOWN, Test, agreement_text, interval_text, verdict  # noqa: F401
from vgh_lib.lm import grpo as lm_grpo
from vgh_lib.lm.cache import model_for, prefix_for
from vgh_lib.paths import REPO_ROOT

# ------------------------------------------------------------------ the design (registered)
TASKS = tuple(design10.TASK_SUITE_CHOSEN["tasks"])
PILOT_SEEDS = (1, 2, 3, 4)          # notebook 10's confirmation (1, 2) and its later run (3, 4), rerun
FIRST_CONFIRMATION_SEED = 5         # the confirmation's seeds: 5, 6, ... (never 0–4)
FIRST_REPLICATION_SEED = 21         # run after the confirmation, reported whatever it shows

BASELINE = "reward std"             # the best p-moment predictor of notebooks 09 and 10, named in advance
PRIMARY = "S exact"
SECONDARY = ("alignment", "AdamW signal")   # beyond BASELINE; with I_POOLED and EXCESS, Holm
I_POOLED = "I exact, all seeds"
EXCESS = "S exact, excess over control"

GRADIENT_TERMS = ("S exact", "alignment", "self term", "AdamW signal", "I exact")
PREDICTORS = GRADIENT_TERMS + ("S", "I", "H", "learnability", "reward std", "non-degenerate",
                               "coverage", "pass@1", "NLL", "short RL")

RULES = {
    "seed_choices": (6, 8, 10, 12),  # GRPO seeds per task the pilot may choose (the issue: ≥ 6)
    "reliability_target": 0.8,       # split-half reliability of the task gains the rule aims at
    "budget_seconds": 900,           # projected wall time of the default run on 2 workers
    "workers": 2,
    "alpha": 0.05,
    "power_target": 0.8,
    "power_effect": 0.4,             # the partial correlation (of the true gains) the power is read at
    "degree": 3,                     # the reduced model: a cubic in the rank of reward-std
    "sims": 1000,                    # simulated designs of each size and power estimate
    "sim_perms": 199,                # permutations per simulated design
}

PREREGISTRATION = REPO_ROOT / "book" / "12_preregistration.md"
PILOT_FILE = REPO_ROOT / "book" / "data" / "12_pilot.json"
SIMULATION_FILE = REPO_ROOT / "book" / "data" / "12_simulation.json"
RECORDS = {"pilot": PILOT_FILE,
           "confirmation": REPO_ROOT / "book" / "data" / "12_confirmation.json",
           "replication": REPO_ROOT / "book" / "data" / "12_replication.json"}
REGISTRATION = Registration(PREREGISTRATION, PILOT_FILE, SIMULATION_FILE, RECORDS)


def study_seeds(first: int, n: int) -> tuple[int, ...]:
    """``n`` consecutive GRPO seeds from ``first``."""
    return tuple(range(first, first + n))


# ------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class LMGradientParams(design10.TaskSuiteParams):
    """Parameters of ``12_lm_gradient_factor``: notebook 10's design (its committed tasks, rates
    and panel) with this study's seeds and arms."""

    # the run profiles: their overrides of the defaults below (the defaults are `default`)
    # the smoke profile: notebook 10's tiny model, five tasks (the analysis needs four)
    PROFILES: ClassVar[dict] = {"smoke": {**design10.SUITE_SMOKE,
                                          "tasks": design10.SUITE_SMOKE["tasks"] + ("successor", "predecessor"),
                                          "min_unseen": 1, "grpo_seeds": (5, 6), "control": True,
                                          "adamw_batches": 3, "n_perm": 99},
                                "default": {},
                                # more GRPO seeds per task
                                "paper": {"grpo_seeds": tuple(range(5, 21)), "device": "auto"}}

    grpo_seeds: tuple[int, ...] = spec(
        study_seeds(FIRST_CONFIRMATION_SEED, LM_GRADIENT_CHOSEN.get("n_grpo_seeds", 6)), lo=1, hi=2**31 - 1,
        help="GRPO seeds of every task (their number chosen on the pilot; never 0–4 outside the pilot)")
    control: bool = spec(LM_GRADIENT_CHOSEN.get("control", False),
                                  help="also run the answer-prior control arm with every seed")
    adamw_batches: int = spec(8, lo=2, hi=1000,
                                       help="sampled one-step updates of the AdamW signal's second moment")
    n_perm: int = spec(9999, lo=9, hi=10_000_000, help="permutations of each test")

    def check(self) -> None:
        super().check()
        if self.pilot:
            raise ParameterError("parameter 'pilot' (notebook 10's screen) is not rerun here; this "
                                 "study's pilot runs with `python -m vgh_lib.experiments.lm_gradient_factor pilot`")
        if self.grpo_prompts > self.train_limit:
            raise ParameterError(f"parameter 'grpo_prompts' = {self.grpo_prompts} must be at most "
                                 f"'train_limit' = {self.train_limit}")


# ------------------------------------------------------------------------------ jobs
@dataclass(frozen=True)
class GradientTaskJob:
    """All of one task's work in one worker: notebook 10's job (panel, then the arms with every
    seed), then the exact gradient terms (:func:`gradient_terms`)."""

    task: design10.TaskJob
    adamw_batches: int
    seed: int                   # draws the AdamW signal's sampled updates

    def paths(self) -> tuple[str, ...]:
        return self.task.paths()


@dataclass
class TaskRow:
    """One task: every predictor and its seconds, and each arm's per-seed gains."""

    task: str
    values: dict[str, float]
    seconds: dict[str, float]
    n_unseen: int
    gains: dict[str, dict[str, list[float]]]     # arm -> outcome ("unseen", "all") -> per seed
    grpo_seconds: list[float]
    control_seconds: list[float]
    largest_drops: list[float]


def gradient_terms(design: design10.SuiteDesign, task: str, adamw_batches: int, seed: int
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """Exact S of the trained blocks over the task's training prompts, its self and alignment
    terms, and the AdamW signal from ``adamw_batches`` sampled updates of one GRPO step
    (``grpo_prompts`` prompts of groups of ``group_size``): (values, seconds)."""
    torch.set_num_threads(1)
    model, tok = model_for(design.model_path, design.device)
    p = design10.prompts(model, tok, task, design)
    prefix = prefix_for(design.model_path, design.device, design.train_layers)
    sig, g = lm_grpo.exact_signal(model, p.train, design.group_size, design.train_layers, prefix=prefix)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    batches = lm_grpo.draw_batches(p.train, adamw_batches, min(design.grpo_prompts, len(p.train)), gen)
    samples = lm_grpo.update_estimates(model, batches, design.group_size, 1.0, design.train_layers,
                                       gen, prefix)
    adamw = adamw_signal(g.numpy(), torch.stack(samples).numpy())
    t_adamw = time.perf_counter() - t0
    values = {"S exact": sig.S, "self term": sig.self_term, "alignment": sig.alignment, "AdamW signal": adamw}
    seconds = {"S exact": sig.seconds, "self term": sig.seconds, "alignment": sig.seconds,
               "AdamW signal": sig.seconds + t_adamw}
    return values, seconds


def run_gradient_task(job: GradientTaskJob) -> TaskRow:
    panel, runs = design10.run_task(job.task)
    values, seconds = gradient_terms(job.task.panel.design, job.task.panel.task, job.adamw_batches, job.seed)
    for name in design10.PANEL:
        values[name], seconds[name] = panel.value(name), (panel.short_seconds if name == "short RL"
                                                          else panel.panel.cost[name])
    values["I exact"] = values["S exact"] * values["H"]
    seconds["I exact"] = seconds["S exact"] + panel.panel.cost["H"]
    # The records' convention since the pilot: an exact term's seconds include the panel's
    # evaluation of p, although exact_signal's own forward pass gives p; costs() and
    # own_seconds() subtract it again when a cost is reported.
    for name in GRADIENT_TERMS:
        if name != "I exact":
            seconds[name] += panel.panel.cost["H"]
    seeds = sorted({r.seed for r in runs})
    gains = {}
    for arm in sorted({r.arm for r in runs}):
        mine = {r.seed: r for r in runs if r.arm == arm}
        gains[arm] = {"unseen": [float(mine[s].gains[:mine[s].n_unseen].mean()) if mine[s].n_unseen else
                                 float("nan") for s in seeds],
                      "all": [float(mine[s].gains.mean()) for s in seeds]}
    grpo_runs = [r for r in runs if r.arm == "grpo"]
    return TaskRow(panel.task, values, seconds, grpo_runs[0].n_unseen, gains,
                   [r.seconds for r in grpo_runs], [r.seconds for r in runs if r.arm == "control"],
                   [r.largest_drop for r in grpo_runs])


def run_study(params: LMGradientParams, tasks=None) -> dict:
    """Every task's predictors and arms, one job per task (``params.jobs`` workers), as a raw
    record (:func:`make_record`)."""
    t0 = time.time()
    d = params.design()
    arms = design10.ARMS if params.control else ("grpo",)
    lr = {"grpo": params.grpo_lr, "control": params.control_lr}
    jobs = [GradientTaskJob(design10.TaskJob(
                design10.PanelJob(d, t, params.grpo_lr, params.seed, params.k, params.coverage_k),
                tuple(design10.ArmJob(d, t, arm, lr[arm], s) for s in params.grpo_seeds for arm in arms)),
                params.adamw_batches, params.seed + 7919)
            for t in (tasks or params_tasks(params))]
    rows = run_jobs(run_gradient_task, jobs, params.jobs, desc="tasks (panel, exact S, GRPO runs)")
    return make_record(params, rows, time.time() - t0)


def params_tasks(params: LMGradientParams) -> list[str]:
    """The committed tasks that enter the outcome for the committed design; otherwise the
    candidate tasks as given (the smoke profile's tiny model has no screen)."""
    return list(eligible_tasks()) if design10.is_committed_design(params) else list(params.tasks)


def make_record(params: LMGradientParams, rows: list[TaskRow], wall_seconds: float) -> dict:
    """A run's raw data, JSON-ready: per task its predictors, their costs and every seed's gains."""
    return {"params": params.as_dict(), "seeds": list(params.grpo_seeds),
            "rows": [dataclasses.asdict(r) for r in rows], "wall_seconds": wall_seconds}


# ------------------------------------------------------------------------ the analysis
@dataclass
class Table:
    """One row per task of a record (the tasks with enough unseen-answer prompts)."""

    task: np.ndarray                 # (n,)
    x: dict[str, np.ndarray]         # predictor -> (n,)
    gains: np.ndarray                # (n, seeds): the GRPO arm's unseen-answer gain
    control: np.ndarray | None       # (n, seeds) or None
    seconds: dict[str, float]        # predictor -> mean seconds per task
    grpo_seconds: float

    @property
    def gain(self) -> np.ndarray:
        return self.gains.mean(1)

    @classmethod
    def from_record(cls, record: dict, min_unseen: int | None = None) -> "Table":
        min_unseen = record["params"]["min_unseen"] if min_unseen is None else min_unseen
        rows = [r for r in record["rows"] if r["n_unseen"] >= min_unseen]
        if len(rows) < 4:
            raise ValueError(f"the record has {len(rows)} tasks with at least {min_unseen} unseen prompts; "
                             f"the analysis needs 4")
        control = (np.array([r["gains"]["control"]["unseen"] for r in rows], float)
                   if all("control" in r["gains"] for r in rows) else None)
        return cls(np.array([r["task"] for r in rows]),
                   {p: np.array([r["values"][p] for r in rows], float) for p in PREDICTORS},
                   np.array([r["gains"]["grpo"]["unseen"] for r in rows], float), control,
                   {p: float(np.mean([r["seconds"][p] for r in rows])) for p in PREDICTORS
                    if p in rows[0]["seconds"]},
                   float(np.mean([s for r in rows for s in r["grpo_seconds"]])))


def partial_rank_test(x, y, z, n_perm: int, seed: int, degree: int = RULES["degree"]) -> tuple[float, float]:
    """The partial rank association of ``x`` with ``y`` given ``z`` over exchangeable units: the
    three are replaced by their ranks, ``x`` and ``y`` residualised on a polynomial of degree
    ``degree`` in ``z``'s ranks, and correlated; one-sided Freedman–Lane p over all units
    (:func:`vgh_lib.common.prediction.partial_association_test` with one group)."""
    one = np.zeros(len(y), int)
    return prediction.partial_association_test(stats.ranks(x), stats.ranks(y), stats.ranks(z), one,
                                               n_perm, seed, degree)


def beyond_baseline(x, y, z, name: str, n_perm: int, seed: int) -> Test:
    """:func:`partial_rank_test` with its Fisher-z interval."""
    stat, p = partial_rank_test(x, y, z, n_perm, seed)
    lo, hi = prediction.fisher_interval(stat, len(y), RULES["degree"])
    return Test(name, stat, lo, hi, p)


def spearman_test(x, y, name: str, n_perm: int, seed: int) -> Test:
    """One-sided permutation Spearman test over exchangeable units, with a Fisher-z interval."""
    rho, p = stats.permutation_pvalue([x], [y], n_perm, seed)     # one group: all units
    lo, hi = prediction.fisher_interval(rho, len(y))
    return Test(name, rho, lo, hi, p)


@dataclass
class Analysis:
    n: int
    reliability_half: float           # split-half correlation of the task gains across tasks
    reliability: float                # its Spearman–Brown reliability of the mean of all seeds
    seeds_for_target: float           # seeds a reliability of 0.8 would need
    primary: Test
    secondary: list[Test]             # Holm-corrected family
    spearman: dict[str, float]        # every predictor's Spearman with the gain
    disattenuated: dict[str, float]

    @property
    def ceiling(self) -> float:
        return float(np.sqrt(max(self.reliability, 0.0)))


def analyse(table: Table, n_perm: int, seed: int, pooled_gain=None, alpha: float = RULES["alpha"]) -> Analysis:
    """The primary test, the Holm-corrected secondary family (the alignment term and the AdamW
    signal beyond reward-std; Spearman(exact I, gain) with ``pooled_gain``, the gain averaged
    over every seed run so far, when given; exact S beyond reward-std for the excess of the
    GRPO arm over the control, when the control ran), the gains' reliability and every
    predictor's Spearman, raw and disattenuated."""
    y, z = table.gain, table.x[BASELINE]
    half, rel = prediction.split_half_reliability(table.gains)
    primary = beyond_baseline(table.x[PRIMARY], y, z, f"{PRIMARY} beyond {BASELINE}", n_perm, seed)
    primary.holds, primary.p_holm = primary.p <= alpha, primary.p
    secondary = [beyond_baseline(table.x[n], y, z, f"{n} beyond {BASELINE}", n_perm, seed + 1 + i)
                 for i, n in enumerate(SECONDARY)]
    if pooled_gain is not None:
        secondary.append(spearman_test(table.x["I exact"], pooled_gain, I_POOLED, n_perm, seed + 5))
    if table.control is not None:
        secondary.append(beyond_baseline(table.x[PRIMARY], y - table.control.mean(1), z, EXCESS,
                                         n_perm, seed + 6))
    for test, adjusted in zip(secondary, prediction.holm_adjusted([t.p for t in secondary])):
        test.p_holm, test.holds = adjusted, adjusted <= alpha
    rho = {p: stats.spearman(table.x[p], y) for p in PREDICTORS}
    return Analysis(y.size, half, rel, prediction.repetitions_for(rel, table.gains.shape[1],
                                                                  RULES["reliability_target"]),
                    primary, secondary, rho, {p: prediction.disattenuate(r, rel) for p, r in rho.items()})


def answer_sentence(analysis: Analysis, is_informative: bool, label: str) -> str:
    """The chapter's one-sentence answer for one registered run."""
    t = analysis.primary
    core = (f"the partial rank correlation of exact S with the unseen-answer gain, given reward-std, "
            f"was {interval_text(t)} over {analysis.n} tasks (95 % interval; permutation p = {t.p:.3g}; "
            f"the gains' reliability {analysis.reliability:.2f})")
    if t.holds:
        return f"Yes on the {label}: {core}, so the gradient factor added to reward-std."
    if is_informative:
        return f"No on the {label}: {core}, although the design had the registered power."
    return (f"Not shown on the {label}: {core}; the design had less than the registered power to "
            f"show a partial correlation of {RULES['power_effect']}, so this is no evidence that the "
            f"factor adds nothing.")


def pooled_gain(table: Table, records: dict[str, dict]) -> np.ndarray | None:
    """Each of ``table``'s tasks' gain averaged over every seed of ``records`` (the secondary
    test of exact I), in ``table``'s task order; None when a record lacks one of its tasks (the
    smoke profile's tasks have no pilot)."""
    try:
        pooled = pooled_table(records)
    except ValueError:
        return None
    index = {t: i for i, t in enumerate(pooled.task)}
    if not all(t in index for t in table.task):
        return None
    return pooled.gain[[index[t] for t in table.task]]


def registered_analyses(n_perm: int, seed: int) -> tuple[dict, dict]:
    """Every committed registered run analysed from its raw record with the same code (the
    confirmation's and the replication's exact-I test pooled over every seed run up to them),
    then all of them pooled, descriptively: ``({name: Analysis}, {name: seeds})``."""
    records = {n: r for n in RECORDS if (r := load_record(n)) is not None}
    analyses, seeds, so_far = {}, {}, {}
    for name, rec in records.items():
        so_far[name] = rec
        table = Table.from_record(rec)
        gain = pooled_gain(table, so_far) if name != "pilot" else None
        analyses[name] = analyse(table, n_perm, seed, pooled_gain=gain)
        seeds[name] = rec["seeds"]
    if len(records) > 1:
        analyses[POOLED] = analyse(pooled_table(records), n_perm, seed)
        seeds[POOLED] = [s for r in records.values() for s in r["seeds"]]
    return analyses, seeds


SECONDARY_KEYS = {**{f"{n} beyond {BASELINE}": key for n, key in zip(SECONDARY, ("alignment", "adamw"))},
                  I_POOLED: "i_pooled", EXCESS: "excess"}


def secondary_keys(analysis: Analysis) -> list[str]:
    """The claim key of each secondary test, in the analysis's order."""
    return [SECONDARY_KEYS[t.name] for t in analysis.secondary]


def secondary_text(analysis: Analysis) -> str:
    """The Holm-corrected secondary family in one sentence, each test with its verdict."""
    return "; ".join(f"{t.name}: {interval_text(t)}, adjusted p = {t.p_holm:.3g}, {verdict(t, True)}"
                     for t in analysis.secondary) + "."


def best_text(analysis: Analysis) -> str:
    """Which predictor ranked the gains best by |ρ|, and where exact S and reward-std stand."""
    rho = analysis.spearman
    best = max(PREDICTORS, key=lambda p: abs(np.nan_to_num(rho[p])))
    return (f"best by |ρ|: {best} (ρ = {rho[best]:+.2f}); reward-std {rho[BASELINE]:+.2f}, exact S "
            f"{rho[PRIMARY]:+.2f}, exact I {rho['I exact']:+.2f}, noisy I {rho['I']:+.2f}")


def pooled_text(analysis: Analysis, seeds) -> str:
    """The descriptive pooling of every registered run in one sentence."""
    return (f"Pooled over GRPO seeds {seed_text(seeds)} ({len(seeds)} per task, descriptive), the gains' "
            f"reliability is {analysis.reliability:.2f} and the partial rank correlation of exact S "
            f"given reward-std is {interval_text(analysis.primary)}; {best_text(analysis)}.")


def simulation_rows(sim: dict, pilot: dict) -> list[list[str]]:
    """The registered simulation and the pilot's power, as table rows."""
    rate = lambda d: f"{d['rate']:.3f} ± {d['se']:.3f}"
    rows = [[f"size, reliability {d['reliability']:.1f}", rate(d)] for d in sim["size"]]
    heavy = sim["size_heavy_noise"]
    rows.append([f"size, t₃ noise, reliability {heavy['reliability']:.1f}", rate(heavy)])
    rows += [[f"power, partial r {d['rho']:.1f}, reliability {d['reliability']:.1f}", rate(d)]
             for d in sim["power"]]
    pw = pilot["power"]
    rows.append([f"pilot: power at partial r {pw['rho']:.1f} and the chosen design's projected "
                 f"reliability {pw['reliability']:.2f}", rate(pw)])
    return rows


def costs(table: Table) -> dict[str, float]:
    """Each gradient quantity's own cost as a fraction of one GRPO run. A record's seconds for
    the exact terms include the panel's evaluation of the success probabilities
    (:func:`run_gradient_task`), which :func:`vgh_lib.lm.grpo.exact_signal` does not need: its
    own forward pass gives them. The evaluation is subtracted here, so exact S is compared with
    noisy S on equal terms."""
    own = {n: own_seconds(table, n) for n in ("S exact", "AdamW signal", "S")}
    own["evaluation of p"] = table.seconds["H"]
    return {n: v / table.grpo_seconds for n, v in own.items()}


def own_seconds(table: Table, name: str) -> float:
    """A predictor's seconds per task, without the evaluation of p for the exact terms that do
    not need it (see :func:`costs`)."""
    seconds = table.seconds.get(name, float("nan"))
    return seconds - table.seconds["H"] if name in GRADIENT_TERMS and name != "I exact" else seconds


RUN_COLUMNS = ["run", "GRPO seeds", "tasks", "reliability", "S exact beyond reward-std [95 % CI]", "p",
               "verdict", "secondary (Holm)"]


def run_rows(analyses: dict[str, Analysis], seeds: dict[str, list[int]], is_informative: bool
             ) -> list[list[str]]:
    """One row per registered run: its seeds, tasks, the gains' reliability, the primary test
    with its verdict, and each secondary test with its own."""
    rows = []
    for name, a in analyses.items():
        second = "; ".join(f"{t.name}: {t.stat:+.2f}, p_Holm {t.p_holm:.3g}, {verdict(t, True)}"
                           for t in a.secondary)
        rows.append([name, seed_text(seeds[name]), str(a.n), f"{a.reliability:.2f}",
                     interval_text(a.primary), f"{a.primary.p:.3g}",
                     verdict(a.primary, is_informative) if name != POOLED else "descriptive", second])
    return rows


def seed_text(seeds) -> str:
    """Seeds with each run of three or more consecutive ones as a range: ``1–10, 21–26``."""
    seeds = sorted(set(seeds))
    runs, start = [], 0
    for i in range(1, len(seeds) + 1):
        if i == len(seeds) or seeds[i] != seeds[i - 1] + 1:
            run = seeds[start:i]
            runs += [f"{run[0]}–{run[-1]}"] if len(run) > 2 else [str(s) for s in run]
            start = i
    return ", ".join(runs)


POOLED = "all seeds pooled (descriptive)"
# parameters that differ between the registered runs of one design
RUN_ONLY = ("grpo_seeds", "control", "profile", "jobs", "n_perm", "device")


def pooled_table(records: dict[str, dict]) -> Table:
    """The tasks every record has, with each task's gains over all the records' seeds side by
    side (the pilot's notebook-10 seeds 1–4 with the new ones): a descriptive pooling."""
    designs = {json.dumps({k: v for k, v in r["params"].items() if k not in RUN_ONLY}, sort_keys=True)
               for r in records.values()}
    if len(designs) > 1:
        raise ValueError("the records ran different designs (another model or budget); they do not pool")
    tables = [Table.from_record(r) for r in records.values()]
    common = [t for t in tables[0].task if all(t in set(o.task) for o in tables[1:])]
    if len(common) < 4:
        raise ValueError(f"the records share {len(common)} tasks; pooling needs 4")

    def pick(t: Table, arr):
        index = {name: i for i, name in enumerate(t.task)}
        return np.asarray(arr)[[index[c] for c in common]]

    base = tables[-1]
    controls = [t.control for t in tables]
    return dataclasses.replace(
        base, task=np.array(common), x={k: pick(base, v) for k, v in base.x.items()},
        gains=np.concatenate([pick(t, t.gains) for t in tables], axis=1),
        control=(np.concatenate([pick(t, c) for t, c in zip(tables, controls)], axis=1)
                 if all(c is not None for c in controls) else None))


PREDICTOR_COLUMNS = ["predictor", "Spearman with the gain [95 % CI]", "disattenuated", "cost / GRPO run"]


def predictor_rows(analysis: Analysis, table: Table) -> list[list[str]]:
    """Every predictor's Spearman with the task gains (Fisher-z interval), disattenuated by the
    gains' reliability, and its cost as a fraction of one GRPO run; best by |ρ| first."""
    out = []
    for n in sorted(PREDICTORS, key=lambda p: -abs(np.nan_to_num(analysis.spearman[p]))):
        rho = analysis.spearman[n]
        lo, hi = prediction.fisher_interval(rho, analysis.n)
        cost = own_seconds(table, n) / table.grpo_seconds
        out.append([n, interval_text(Test(n, rho, lo, hi, float("nan"))),
                    f"{analysis.disattenuated[n]:+.2f}", f"{cost:.3g}"])
    return out


def same_run(record: dict, committed: dict | None) -> str:
    """Whether this build's run is the committed confirmation's design and, if so, how far its
    gains are from it (a phrase for the chapter)."""
    if committed is None:
        return "no committed confirmation to compare with"
    if record["params"] != committed["params"]:
        return "this run's parameters differ from the committed confirmation's, so it is not a rerun of it"
    a = np.array([g for r in record["rows"] for g in r["gains"]["grpo"]["unseen"]])
    b = np.array([g for r in committed["rows"] for g in r["gains"]["grpo"]["unseen"]])
    if a.shape != b.shape:
        return "this rerun has other tasks than the committed confirmation"
    return (f"this rerun of the committed confirmation differs from it by at most {np.nanmax(np.abs(a - b)):.2g} "
            f"in a task's gain (floating point differs between machines)")


# ---------------------------------------------------------------------------- figures
def figure_partial(table: Table, analysis: Analysis, title: str):
    """The primary test drawn: each task's gain rank against its exact-S rank, both after
    removing a cubic in reward-std's rank, with task labels."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    one = np.zeros(table.gain.size, int)
    rx, ry = prediction.partial_residuals(stats.ranks(table.x[PRIMARY]), stats.ranks(table.gain),
                                          stats.ranks(table.x[BASELINE]), one, RULES["degree"])
    fig, ax = plt.subplots(figsize=plots.figsize(6.4, 4.6))
    ax.scatter(rx, ry, color=plots.palette(1)[0], s=28)
    plots.label_points(ax, rx, ry, list(table.task), fontsize=9)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_xlabel("rank of exact S, given reward-std")
    ax.set_ylabel("rank of the gain, given reward-std")
    ax.set_title(f"{title}: partial r = {interval_text(analysis.primary)}", fontsize=9)
    return fig


def figure_predictors(analysis: Analysis, title: str):
    """Every predictor's Spearman with the task gains, raw (circles, 95 % interval) and
    disattenuated (squares), against ± the ceiling the gains' reliability allows."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    names = sorted(PREDICTORS, key=lambda p: -abs(np.nan_to_num(analysis.spearman[p])))
    rho = [analysis.spearman[n] for n in names]
    iv = [prediction.fisher_interval(r, analysis.n) for r in rho]
    fig, ax = plt.subplots(figsize=plots.figsize(6.8, 5.2))
    plots.intervals(ax, names, rho, [i[0] for i in iv], [i[1] for i in iv], reference=0.0)
    ax.scatter([analysis.disattenuated[n] for n in names], np.arange(len(names)), marker="s",
               facecolors="none", edgecolors=plots.palette(2)[1], label="disattenuated")
    for c in (-analysis.ceiling, analysis.ceiling):
        ax.axvline(c, color="0.4", ls="--", lw=1)
    ax.set_xlabel("Spearman with the task gain (95 % CI); best by |ρ| at the top")
    ax.legend(fontsize=9, loc="lower right")
    ax.set_title(f"{title}; dashed: ± √reliability = {analysis.ceiling:.2f}", fontsize=9)
    return fig


# ------------------------------------------------------------------ size and power
def draw_design(n: int, rho: float, reliability: float, rng, heavy: bool = False):
    """One simulated design of ``n`` tasks: reward-std ``z``; log S ``x = 0.6 z + u``; the true
    gain ``t = h(z) + rho·u' + √(1 − rho²)·v`` with ``u'`` the standardised ``u`` and ``h`` a
    saturating function of ``z``; the measured gain ``y = t + e`` with the noise that gives the
    outcome ``reliability`` (a t₃ noise when ``heavy``). ``rho`` is the partial correlation of
    ``x`` and the true gain given ``z``."""
    z = rng.normal(size=n)
    u = rng.normal(size=n)
    x = 0.6 * z + u
    t = np.tanh(z) + rho * u + np.sqrt(1 - rho ** 2) * rng.normal(size=n)
    sd = np.sqrt(t.var() * (1 - reliability) / reliability)
    e = rng.standard_t(3, n) / np.sqrt(3) if heavy else rng.normal(size=n)
    return x, t + sd * e, z


def simulate_test(n: int, rho: float, reliability: float, n_sims: int, n_perm: int, seed: int,
                  heavy: bool = False, alpha: float = RULES["alpha"], progress: bool = False) -> dict:
    """How often the primary test rejects on ``n_sims`` designs of :func:`draw_design` (its size
    at ``rho`` = 0, its power otherwise), with the binomial standard error of that rate."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    hits = 0
    for i in tqdm(range(n_sims), desc=f"rho {rho}, reliability {reliability}", disable=not progress):
        x, y, z = draw_design(n, rho, reliability, rng, heavy)
        hits += partial_rank_test(x, y, z, n_perm, seed + i)[1] <= alpha
    rate = hits / n_sims
    return {"rate": rate, "se": float(np.sqrt(rate * (1 - rate) / n_sims)), "n_sims": n_sims,
            "n_perm": n_perm, "rho": rho, "reliability": reliability, "heavy": heavy, "n": n}


def eligible_tasks() -> tuple[str, ...]:
    """The committed tasks with at least 10's ``min_unseen`` unseen-answer prompts (fixed by the
    split, before any run): the tasks the confirmation and the later run train."""
    p = LMGradientParams()
    return tuple(t for t in TASKS if len(design10.task_split(t).unseen[:p.unseen_limit]) >= p.min_unseen)


def registration_simulation(seed: int = 0, progress: bool = False) -> dict:
    """The size and power simulation committed with the registration, before any data of this
    study: at the number of eligible tasks, the size with Gaussian and with t₃ noise, and the
    power at partial correlations 0.2, 0.3, 0.4 and 0.5 of the true gains, at outcome
    reliabilities 1.0, 0.8 and 0.6."""
    n, sims, perms = len(eligible_tasks()), RULES["sims"], RULES["sim_perms"]
    out = {"n_tasks": n, "size": [simulate_test(n, 0.0, r, sims, perms, seed + i, progress=progress)
                                  for i, r in enumerate((1.0, 0.8, 0.6))]}
    out["size_heavy_noise"] = simulate_test(n, 0.0, 0.6, sims, perms, seed + 10, heavy=True, progress=progress)
    out["power"] = [simulate_test(n, rho, r, sims, perms, seed + 20 + 4 * i + j, progress=progress)
                    for i, rho in enumerate((0.2, 0.3, 0.4, 0.5)) for j, r in enumerate((1.0, 0.8, 0.6))]
    return out


# --------------------------------------------------------------------- the pilot's rule
def choose_design(reliability_at_pilot: float, pilot_seeds: int, panel_seconds: float,
                  grpo_seconds: float, control_seconds: float, n_tasks: int) -> dict:
    """The registered rule: the smallest number of seeds in ``seed_choices`` whose projected
    reliability (Spearman–Brown from the pilot's) reaches the target and whose projected wall
    time (the tasks' panels and exact terms, then one GRPO run per task and seed, on
    ``workers`` workers) fits the budget; if none reaches the target, the largest that fits;
    the smallest if none fits. The control arm runs with every seed if the total still fits."""
    choices, w = RULES["seed_choices"], RULES["workers"]

    def wall(n, control):
        return n_tasks * (panel_seconds + n * (grpo_seconds + (control_seconds if control else 0.0))) / w

    fits = [n for n in choices if wall(n, False) <= RULES["budget_seconds"]]
    projected = {n: prediction.spearman_brown(reliability_at_pilot, n / pilot_seeds) for n in choices}
    good = [n for n in fits if projected[n] >= RULES["reliability_target"]]
    chosen = min(good) if good else (max(fits) if fits else min(choices))
    return {"n_grpo_seeds": chosen, "control": wall(chosen, True) <= RULES["budget_seconds"],
            "projected_reliability": {str(n): projected[n] for n in choices},
            "projected_seconds": {str(n): wall(n, False) for n in choices},
            "projected_seconds_with_control": wall(chosen, True), "fits_budget": fits}


def run_pilot(params: LMGradientParams, progress: bool = True) -> dict:
    """The pre-registered pilot: notebook 10's seeds 1–4, both arms, on its committed tasks,
    with the new gradient terms; the seeds rule (:func:`choose_design`) and the power of the
    primary test at the registered effect and the projected reliability. Returns the raw
    outputs as committed (``book/data/12_pilot.json``)."""
    params = dataclasses.replace(params, grpo_seeds=PILOT_SEEDS, control=True)
    record = run_study(params, tasks=list(TASKS))    # all 29: this commits 10's seeds 1–4 per task
    table = Table.from_record(record)
    half, rel = prediction.split_half_reliability(table.gains)
    rows = record["rows"]
    panel_s = float(np.mean([r["seconds"]["AdamW signal"] + r["seconds"]["short RL"] for r in rows]))
    grpo_s = float(np.mean([s for r in rows for s in r["grpo_seconds"]]))
    control_s = float(np.mean([s for r in rows for s in r["control_seconds"]]))
    rule = choose_design(rel, len(PILOT_SEEDS), panel_s, grpo_s, control_s, len(table.gain))
    reliability = rule["projected_reliability"][str(rule["n_grpo_seeds"])]
    power = simulate_test(len(table.gain), RULES["power_effect"], min(max(reliability, 0.05), 1.0),
                          RULES["sims"], RULES["sim_perms"], params.seed + 1, progress=progress)
    return REGISTRATION.pilot_record({
        "rules": {k: list(v) if isinstance(v, tuple) else v for k, v in RULES.items()}, **record,
        "reliability_half": half, "reliability": rel,
        "seconds_per_task": {"panel": panel_s, "grpo": grpo_s, "control": control_s},
        "design_rule": rule, "power": power})


def load_pilot(path: Path | None = None) -> dict:
    """The committed pilot outputs, checked against the registered text they name."""
    return REGISTRATION.load_pilot(path)


def informative(pilot: dict) -> bool:
    """Whether the primary test's simulated power at the registered effect reached the target."""
    return pilot["power"]["rate"] >= RULES["power_target"]


def check_design(pilot: dict, chosen: dict = LM_GRADIENT_CHOSEN) -> None:
    """Refuse a run whose committed design does not name the pilot file it reads, or does not
    take the choices the pilot's rule made."""
    REGISTRATION.check_design(chosen)
    rule = pilot["design_rule"]
    if (chosen.get("n_grpo_seeds"), chosen.get("control")) != (rule["n_grpo_seeds"], rule["control"]):
        raise ValueError("the committed design is not the one the pilot's rule chose")


def load_simulation(path: Path | None = None) -> dict:
    """The size and power simulation committed with the registration, checked against the
    registered text it names."""
    return REGISTRATION.load_simulation(path)


def load_record(stage: str) -> dict | None:
    """A committed registered run (``pilot``, ``confirmation`` or ``replication``), or None
    when it has not been run yet."""
    return REGISTRATION.load_record(stage)


def stage_params(stage: str, params: LMGradientParams | None = None) -> LMGradientParams:
    """The committed design of a registered stage: its seeds and arms."""
    params = params or LMGradientParams()
    n = LM_GRADIENT_CHOSEN["n_grpo_seeds"]
    first = FIRST_CONFIRMATION_SEED if stage == "confirmation" else FIRST_REPLICATION_SEED
    return dataclasses.replace(params, grpo_seeds=study_seeds(first, n), control=LM_GRADIENT_CHOSEN["control"])


def record_stage(stage: str, params: LMGradientParams | None = None, progress: bool = True) -> Path:
    """Run one registered stage and write its raw record under ``book/data`` (atomically)."""
    REGISTRATION.check_stage(stage)
    if stage == "pilot":
        data = run_pilot(params or LMGradientParams(), progress)
    else:
        check_design(load_pilot())
        data = {"stage": stage, **run_study(stage_params(stage, params))}
    write_json(RECORDS[stage], data)
    return RECORDS[stage]


if __name__ == "__main__":   # python -m vgh_lib.experiments.lm_gradient_factor STAGE
    import sys

    REGISTRATION.main(sys.argv[1:], "vgh_lib.experiments.lm_gradient_factor", record_stage, registration_simulation)


# ------------------------------------------------------------------------------ the claims
PRIMARY_CLAIM = ClaimSpec(
    "p12.primary.p", "one-sided Freedman–Lane p of exact S's rank beyond a cubic in reward-std's rank "
    "(partial r {stat})", "<=", RULES["alpha"], kind="empirical",
    fails_if="the data do not show that exact S adds to reward-std")


def claims(analysis: Analysis) -> tuple[ClaimSpec, ...]:
    """Notebook 12's claims: the primary test, and one Holm-adjusted claim per secondary test of
    the registered family (the excess test only where the control arm ran)."""
    return (PRIMARY_CLAIM, *(
        ClaimSpec(f"p12.{key}.p_holm", f"Holm-adjusted p: {t.name} " + "(statistic {stat})", "<=",
                  RULES["alpha"], kind="empirical", fails_if=f"the data do not show it: {t.name}")
        for t, key in zip(analysis.secondary, secondary_keys(analysis))))


def claim_values(analysis: Analysis, is_informative: bool) -> dict[str, Measured]:
    """What notebook 12 measured for each of :func:`claims`."""
    out = {PRIMARY_CLAIM.id: Measured(analysis.primary.p, fields={"stat": interval_text(analysis.primary)},
                                      not_shown=not is_informative)}
    for t, key in zip(analysis.secondary, secondary_keys(analysis)):
        out[f"p12.{key}.p_holm"] = Measured(t.p_holm, fields={"stat": interval_text(t)})
    return out


def finding(analysis: Analysis, is_informative: bool) -> str:
    """The landing page's one line for this run."""
    return (f"exact S beyond reward-std: partial rank r {interval_text(analysis.primary)}, "
            f"p = {analysis.primary.p:.3g}: {verdict(analysis.primary, is_informative)}")
