"""Notebook ``09_what_predicts_rl_gain``: which pre-RL measurement predicts which checkpoint
gains most from RL, across pretraining recipes, and does the paper's value impact ``I`` add
anything to training stage? (issue 19; the paper's Section 5 criterion, reconstructed in
book/theory.md §4; the design is pre-registered in ``book/09_preregistration.md``).

Design points are checkpoints of several pretraining *recipes* (model size, corpus noise,
learning rate, task). At each checkpoint the whole panel of :mod:`vgh_lib.common.panel` is
measured, plus the trivial stage predictors (pass@1, log step) and a short GRPO run; then GRPO
with the full budget gives the gain (exact held-out pass@1 after − before, as in notebook 05).
The predictors are compared out of recipe (:mod:`vgh_lib.common.prediction`).

The rules that choose the design (``PILOT`` and the functions under it) were committed before
the pilot ran; none of them looks at any predictor's relation to the gain. The pilot's raw
outputs are ``book/data/09_pilot.json`` (with the hash of the registered text they followed);
the design they chose is :data:`vgh_lib.experiments.designs.PREDICTOR_CHOSEN`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import numpy as np
import torch

from vgh_lib.common import impact, panel, prediction
from vgh_lib.common.parallel import run_jobs
from vgh_lib.errors import ParameterError
from vgh_lib.experiments.designs import PREDICTOR_CHOSEN
from vgh_lib.experiments.grpo_budget import GRPOBudget
from vgh_lib.harness.claims import ClaimSpec, Measured
from vgh_lib.harness import glue
from vgh_lib.harness.params import NotebookParams, OnDevice, Workers, spec
from vgh_lib.harness.preregistration import Registration, file_sha256, read_record  # noqa: F401 (notebook 09)
from vgh_lib.paths import REPO_ROOT
from vgh_lib.tiny import grpo
from vgh_lib.tiny.jobs import GainJob, GainRun, run_gain
from vgh_lib.tiny.models import load_local
from vgh_lib.tiny.pretrain import PretrainConfig, pretrain
from vgh_lib.tiny.sampling import encode_prompts, answer_logprob

# ------------------------------------------------------------------ recipes (registered)
# Every recipe is the book's trajectory (addition of 2-digit numbers, 2 layers × 64, a 95 %
# clean corpus, peak learning rate 3e-3) with these changes; each runs with its own seed.
RECIPES: dict[str, dict] = {
    # the confirmation recipes
    "base": {},
    "noisy corpus": {"corpus_clean_fraction": 0.6},
    "one layer": {"n_layer": 1, "n_embd": 32, "n_head": 2},
    "slow lr": {"lr": 1e-3},
    "wide": {"n_embd": 128},
    "reverse": {"task": "reverse", "n_digits": 4, "lr": 3e-4},
    # the pilot's recipes (never used by the confirmation)
    "pilot: clean 0.8": {"corpus_clean_fraction": 0.8},
    "pilot: 1 layer × 64": {"n_layer": 1},
    "pilot: reverse 5": {"task": "reverse", "n_digits": 5, "lr": 1e-3},
}
CONFIRMATION = ("base", "noisy corpus", "one layer", "slow lr", "wide", "reverse")
CONFIRMATION_SEEDS = (11, 12, 13, 14, 15, 16)
PILOT_RECIPES = ("pilot: clean 0.8", "pilot: 1 layer × 64", "pilot: reverse 5")
PILOT_SEEDS = (101, 102, 103)

# How each predictor is calibrated (prediction.features): the stage predictors get a cubic,
# because the gain rises and then falls with stage; I and S are ratio-scale (log); the rest
# enter linearly.
PREDICTORS = ("I", "S", "H", "learnability", "reward std", "non-degenerate", "coverage",
              "pass@1", "NLL", "log step", "short RL")
TRANSFORMS = {"I": "log", "S": "log", "pass@1": "cubic", "log step": "cubic"}

# ------------------------------------------------------------------ the pilot's rules
# Written down before the pilot ran (book/09_preregistration.md); none of them looks at a
# predictor's relation to the gain.
PILOT = {
    "lrs": (1e-3, 3e-4, 1e-4),
    "lr_steps": 20,
    "pass1_targets": (0.25, 0.5, 0.9),
    "collapse_tolerance": 0.05,
    "pass1_range": (0.02, 0.9),
    "max_checkpoints": 6,
    "power_sims": 200,
    "power_perms": 199,
}
PILOT_FILE = REPO_ROOT / "book" / "data" / "09_pilot.json"
PREREGISTRATION = REPO_ROOT / "book" / "09_preregistration.md"
REGISTRATION = Registration(PREREGISTRATION, PILOT_FILE)


def learning_region(pass1, pass1_range=PILOT["pass1_range"],
                    max_checkpoints: int = PILOT["max_checkpoints"]) -> list[int]:
    """Indices of the checkpoints whose pretraining-evaluation pass@1 lies in ``pass1_range``;
    when more than ``max_checkpoints`` do, that many at evenly spaced positions among them."""
    lo, hi = pass1_range
    inside = [i for i, v in enumerate(pass1) if lo <= v <= hi]
    if len(inside) <= max_checkpoints:
        return inside
    pos = np.unique(np.round(np.linspace(0, len(inside) - 1, max_checkpoints)).astype(int))
    return [inside[j] for j in pos]


def lr_checkpoints(pass1, targets=PILOT["pass1_targets"]) -> list[int]:
    """Positions of the (learning-region) checkpoints whose pass@1 is closest to each target:
    notebook 05's rule, :func:`vgh_lib.common.impact.pilot_checkpoints`."""
    return impact.pilot_checkpoints(pass1, targets)




# ------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class PredictorParams(GRPOBudget, Workers, OnDevice, NotebookParams):
    """Parameters of ``09_what_predicts_rl_gain`` (the design of book/09_preregistration.md)."""

    # the run profiles: their overrides of the defaults below (the defaults are `default`)
    PROFILES: ClassVar[dict] = {"smoke": {"recipes": ("base", "noisy corpus", "one layer"),
                                          "recipe_seeds": (11, 12, 13), "pretrain_steps": 150,
                                          "n_checkpoints": 6, "n_eval": 40, "eval_samples": 8, "k": 4,
                                          "pass1_lo": 0.0, "pass1_hi": 1.0, "max_checkpoints": 3,
                                          "grpo_steps": 3, "grpo_prompts": 4, "grpo_seeds": (0, 1),
                                          "short_steps": 1, "signal_batches": 3, "signal_prompts": 4,
                                          "factor_prompts": 16, "coverage_k": 16, "n_perm": 19,
                                          "coverage_sims": 10, "jobs": 1},
                                "default": {},
                                # the default design with more seeds and checkpoints per recipe
                                "paper": {"grpo_seeds": (0, 1, 2, 3, 4, 5, 6, 7), "max_checkpoints": 10,
                                          "device": "auto"}}

    recipes: tuple[str, ...] = spec(CONFIRMATION, choices=tuple(RECIPES), help="the recipes (groups)")
    recipe_seeds: tuple[int, ...] = spec(CONFIRMATION_SEEDS, lo=0, hi=2**31 - 1,
                                         help="one trajectory seed per recipe")
    pretrain_steps: int = spec(2000, lo=10, hi=1_000_000, help="pretraining steps of every recipe")
    n_checkpoints: int = spec(20, lo=3, hi=60, help="saved checkpoints: step 0, then log-spaced")
    n_eval: int = spec(200, lo=10, hi=100_000, help="held-out prompts (the gain; the trajectory's own evaluation)")
    eval_samples: int = spec(16, lo=2, hi=1024, help="samples per prompt of the trajectory's evaluation")
    k: int = spec(8, lo=1, hi=1024, help="k of pass@k in the headroom H")
    pass1_lo: float = spec(PILOT["pass1_range"][0], lo=0.0, hi=1.0, help="learning region: lowest pass@1")
    pass1_hi: float = spec(PILOT["pass1_range"][1], lo=0.0, hi=1.0, help="learning region: highest pass@1")
    max_checkpoints: int = spec(PILOT["max_checkpoints"], lo=2, hi=60, help="checkpoints per recipe")
    grpo_lr: float = spec(PREDICTOR_CHOSEN["lr"], lo=1e-7, hi=1.0, help="AdamW learning rate (chosen on the pilot)")
    grpo_seeds: tuple[int, ...] = spec((0, 1, 2), lo=0, hi=2**31 - 1, help="GRPO seeds per checkpoint")
    short_steps: int = spec(6, lo=1, hi=100_000, help="steps of the short-RL predictor's run")
    short_seed: int = spec(1000, lo=0, hi=2**31 - 1, help="GRPO seed of the short run")
    signal_batches: int = spec(8, lo=3, hi=1000, help="independent batches of the signal S")
    signal_prompts: int = spec(32, lo=1, hi=100_000, help="prompts per batch of the signal S")
    factor_prompts: int = spec(200, lo=4, hi=100_000, help="training prompts of the exact evaluation")
    coverage_k: int = spec(64, lo=1, hi=100_000, help="K of the coverage predictor pass@K")
    n_perm: int = spec(999, lo=9, hi=1_000_000, help="Freedman–Lane permutations")
    coverage_sims: int = spec(200, lo=10, hi=100_000, help="simulated designs of the coverage check")
    caliper: float = spec(0.05, lo=0.0, hi=1.0, help="matched pairs: largest pass@1 difference")
    pilot: bool = spec(False, help="rerun the pilot and compare its choice with the committed design")

    def check(self) -> None:
        if len(self.recipe_seeds) != len(self.recipes):
            raise ParameterError(f"parameter 'recipe_seeds' needs one seed per recipe: "
                                 f"{len(self.recipes)} recipes, {len(self.recipe_seeds)} seeds")
        if len(set(self.recipes)) != len(self.recipes) or len(self.recipes) < 3:
            raise ParameterError("parameter 'recipes' needs at least 3 distinct recipes "
                                 "(leave-one-recipe-out fits on the others)")
        if len(set(self.recipe_seeds)) != len(self.recipe_seeds):
            raise ParameterError("parameter 'recipe_seeds' must be distinct (a seed names a trajectory)")
        if self.pass1_lo >= self.pass1_hi:
            raise ParameterError(f"parameter 'pass1_lo' = {self.pass1_lo} must be below "
                                 f"'pass1_hi' = {self.pass1_hi}")
        if self.k > self.eval_samples:
            raise ParameterError(f"parameter 'k' = {self.k} must be at most 'eval_samples' = "
                                 f"{self.eval_samples}")
        if self.short_seed in self.grpo_seeds:
            raise ParameterError(f"parameter 'short_seed' = {self.short_seed} must differ from "
                                 f"the outcome's 'grpo_seeds' {self.grpo_seeds}")
        if len(self.grpo_seeds) < 2:
            raise ParameterError("parameter 'grpo_seeds' needs at least 2 seeds")

    def pretrain_config(self, recipe: str, seed: int) -> PretrainConfig:
        """The trajectory of ``recipe`` with trajectory seed ``seed``."""
        base = PretrainConfig(pretrain_steps=self.pretrain_steps, n_checkpoints=self.n_checkpoints,
                              n_eval=self.n_eval, eval_samples=self.eval_samples, k=self.k, seed=seed)
        return dataclasses.replace(base, **RECIPES[recipe])

    def trajectories(self, recipes=None, seeds=None, progress: bool = True) -> dict[str, list]:
        """Each recipe's learning-region checkpoints (:func:`learning_region`), pretrained once
        and then read from the cache; keyed by recipe."""
        out = {}
        for r, s in zip(recipes or self.recipes, seeds or self.recipe_seeds, strict=True):
            cps = pretrain(self.pretrain_config(r, s), device=self.device, progress=progress)
            cps = [c for c in cps if c.step > 0]
            idx = learning_region([c.metrics["pass1"] for c in cps], (self.pass1_lo, self.pass1_hi),
                                  self.max_checkpoints)
            out[r] = [cps[i] for i in idx]
        return out


def usable(trajectories: dict[str, list], minimum: int = 3) -> tuple[dict[str, list], list[str]]:
    """The recipes with at least ``minimum`` learning-region checkpoints, and the names of
    those left out (the pre-registered rule)."""
    keep = {r: cps for r, cps in trajectories.items() if len(cps) >= minimum}
    return keep, [r for r in trajectories if r not in keep]


# ------------------------------------------------------------------------------ jobs
@dataclass(frozen=True)
class PanelJob:
    """The whole predictor panel of one checkpoint (:func:`run_panel`)."""

    recipe: str
    path: str
    step: int
    pretrain: PretrainConfig
    signal_batches: int
    signal_prompts: int
    group_size: int
    temperature: float
    factor_prompts: int
    k: int
    coverage_k: int
    short: grpo.GRPOConfig       # the short-RL predictor's run
    seed: int                    # draws the signal's batches
    device: str = "cpu"

    def paths(self) -> tuple[str, ...]:
        return (self.path,)


@dataclass
class PanelPoint:
    """What :func:`run_panel` measured at one checkpoint: the raw data and the panel."""

    recipe: str
    trajectory: int
    step: int
    logp: np.ndarray             # (factor_prompts,) log success probability, training prompts
    logp_held_out: np.ndarray    # (n_eval,) the same on the held-out prompts (the NLL)
    gram: np.ndarray             # (M, M) the signal's batch estimates
    short_probe: list[float]     # the short run's exact probe value at its probe steps
    values: dict[str, float]     # every predictor of PREDICTORS
    seconds: dict[str, float]    # what each predictor's measurements cost

    def as_dict(self) -> dict:
        return {"recipe": self.recipe, "trajectory": self.trajectory, "step": self.step,
                "logp": self.logp.tolist(), "logp_held_out": self.logp_held_out.tolist(),
                "gram": self.gram.tolist(), "short_probe": self.short_probe,
                "values": self.values, "seconds": self.seconds}


@torch.no_grad()
def answer_logprobs(model, tokenizer, examples, temperature: float) -> np.ndarray:
    """Each prompt's teacher-forced ``log π_τ(answer | prompt)``, (P,): the log of its exact
    success probability (:func:`vgh_lib.tiny.sampling.exact_values` is its exponential). The
    book's tasks share one prompt length, so one batched pass does; ``vgh probe``'s
    :func:`vgh_lib.tools.probe.answer_logprobs` groups prompts of any task by shape first."""
    prompts, answers = encode_prompts(tokenizer, examples, next(model.parameters()).device)
    return answer_logprob(model, prompts, answers, temperature).double().cpu().numpy()


def run_panel(job: PanelJob) -> PanelPoint:
    """Every predictor of one checkpoint on one thread, each measurement timed."""
    torch.set_num_threads(1)
    train, held_out = job.pretrain.task_obj().split()
    model, tok = load_local(job.path, job.device)
    t0 = time.perf_counter()
    # the last training prompts: disjoint from the GRPO probe prompts (the first 64)
    logp = answer_logprobs(model, tok, train[-job.factor_prompts:], job.temperature)
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    logp_ho = answer_logprobs(model, tok, held_out, job.temperature)
    t_nll = time.perf_counter() - t0
    t0 = time.perf_counter()
    gram = grpo.signal_gram(model, tok, train, job.signal_batches, job.signal_prompts,
                            job.group_size, job.temperature, job.seed)
    t_signal = time.perf_counter() - t0
    t0 = time.perf_counter()
    short = grpo.train(model, tok, train, job.short)
    t_short = time.perf_counter() - t0
    pan = panel.panel(logp, gram, job.group_size, job.k, job.coverage_k, t_eval, t_signal)
    values = dict(pan.values)
    seconds = dict(pan.cost)
    values["NLL"], seconds["NLL"] = float(-logp_ho.mean()), t_nll
    values["log step"], seconds["log step"] = float(np.log(job.step)), 0.0
    values["short RL"] = float(short.probe_value[-1] - short.probe_value[0])
    seconds["short RL"] = t_short
    return PanelPoint(job.recipe, job.pretrain.seed, job.step, logp, logp_ho, gram,
                      list(short.probe_value), values, seconds)


def panel_jobs(params: PredictorParams, trajectories: dict[str, list], seeds=None) -> list[PanelJob]:
    seeds = seeds or params.recipe_seeds
    recipes = list(trajectories)
    return [PanelJob(r, str(c.path), c.step, params.pretrain_config(r, s), params.signal_batches,
                     params.signal_prompts, params.group_size, params.temperature,
                     params.factor_prompts, params.k, params.coverage_k,
                     params.grpo_config(lr=params.grpo_lr, seed=params.short_seed, steps=params.short_steps),
                     params.seed + 7919 * s, params.device)
            for r, s in zip(recipes, seeds, strict=True) for c in trajectories[r]]


def gain_jobs(params: PredictorParams, trajectories: dict[str, list], seeds=None,
              grpo_seeds=None, lr: float | None = None, steps: int | None = None) -> list[GainJob]:
    seeds = seeds or params.recipe_seeds
    return [GainJob.at(c, params.pretrain_config(r, s),
                       params.grpo_config(lr=lr or params.grpo_lr, seed=g, steps=steps), params.device)
            for r, s in zip(list(trajectories), seeds, strict=True) for c in trajectories[r]
            for g in (grpo_seeds or params.grpo_seeds)]


# ------------------------------------------------------------------------ the table
@dataclass
class Table:
    """One row per checkpoint: its recipe, step, every predictor, and the outcome."""

    recipe: np.ndarray           # (n,) recipe names
    step: np.ndarray             # (n,)
    x: dict[str, np.ndarray]     # predictor -> (n,)
    gain: np.ndarray             # (n,) mean over GRPO seeds of the paired held-out gain
    gain_se: np.ndarray          # (n,) its SE over seeds
    seconds: dict[str, float]    # predictor -> mean seconds per checkpoint
    grpo_seconds: float          # mean seconds of one full GRPO run
    collapsed: int               # GRPO runs whose probe value fell more than the tolerance

    @property
    def cost(self) -> dict[str, float]:
        """Each predictor's cost as a fraction of one full GRPO run."""
        return {p: self.seconds[p] / self.grpo_seconds for p in PREDICTORS}

    def as_rows(self) -> list[dict]:
        return [{"recipe": str(self.recipe[i]), "step": int(self.step[i]),
                 **{p: float(self.x[p][i]) for p in PREDICTORS},
                 "gain": float(self.gain[i]), "gain SE": float(self.gain_se[i])}
                for i in range(self.gain.size)]


def build_table(points: list[PanelPoint], runs: list[GainRun],
                tolerance: float = PILOT["collapse_tolerance"]) -> Table:
    """Join the panel of every checkpoint with its GRPO runs (matched by trajectory and step)."""
    if not points:
        raise ValueError("no checkpoints to build a table from")
    rows = []
    for pt in points:
        mine = [r for r in runs if r.trajectory == pt.trajectory and r.step == pt.step]
        if not mine:
            raise ValueError(f"no GRPO runs at step {pt.step} of recipe {pt.recipe!r}")
        g = np.array([r.gain for r in mine])
        rows.append((pt, g))
    return Table(np.array([pt.recipe for pt, _ in rows]), np.array([pt.step for pt, _ in rows]),
                 {p: np.array([pt.values[p] for pt, _ in rows]) for p in PREDICTORS},
                 np.array([g.mean() for _, g in rows]),
                 np.array([g.std(ddof=1) / np.sqrt(g.size) if g.size > 1 else np.nan for _, g in rows]),
                 {p: float(np.mean([pt.seconds[p] for pt, _ in rows])) for p in PREDICTORS},
                 float(np.mean([r.seconds for r in runs])),
                 sum(r.largest_drop > tolerance for r in runs))


# ------------------------------------------------------------------------- analysis
def design_matrix(table: Table, predictor: str) -> np.ndarray:
    return prediction.features(table.x[predictor], TRANSFORMS.get(predictor, "identity"))


@dataclass
class Score:
    r2: prediction.Interval
    rho: prediction.Interval


def score_predictor(table: Table, predictor: str) -> Score:
    """Out-of-recipe R² and ρ of one predictor, each with its delete-one-recipe jackknife on a
    scale that respects its range (R² ≤ 1 on log(1 − R²), ρ in [−1, 1] on Fisher z)."""
    y, g = table.gain, table.recipe

    def stat(key):
        def f(m):
            X = design_matrix(_subset(table, m), predictor)
            return prediction.scores(X, y[m], g[m])[key]
        return f

    return Score(prediction.jackknife_r2(stat("r2"), g), prediction.jackknife_bounded(stat("rho"), g))


def _subset(table: Table, mask) -> Table:
    return Table(table.recipe[mask], table.step[mask], {p: v[mask] for p, v in table.x.items()},
                 table.gain[mask], table.gain_se[mask], table.seconds, table.grpo_seconds,
                 table.collapsed)


def stage_and_impact(table: Table) -> tuple[np.ndarray, np.ndarray]:
    """The base features (a cubic in pass@1) and the extra one (log I) of the incremental claim."""
    return (prediction.features(table.x["pass@1"], "cubic"),
            prediction.features(table.x["I"], "log"))


@dataclass
class Incremental:
    delta: prediction.Interval   # ΔR²_oos with its jackknife interval
    p: float                     # Freedman–Lane, one-sided
    n_perm: int

    @property
    def holds(self) -> bool:
        return self.p <= 0.05 and self.delta.lo > 0


def incremental_value(table: Table, n_perm: int, seed: int) -> Incremental:
    """The pre-registered claim: ΔR²_oos of adding log I to a cubic in pass@1, its jackknife
    interval over recipes and its Freedman–Lane p-value."""
    base, extra = stage_and_impact(table)
    y, g = table.gain, table.recipe

    def f(m):
        return prediction.incremental_r2(base[m], extra[m], y[m], g[m])

    delta = prediction.jackknife(f, g)
    _, p = prediction.freedman_lane(base, extra, y, g, n_perm, seed)
    return Incremental(delta, p, n_perm)


@dataclass
class Pairs:
    pairs: list[tuple[int, int]]
    agree: int
    n: int
    p: float


def matched(table: Table, caliper: float) -> Pairs:
    """Checkpoints of different recipes at the same pass@1 (within ``caliper``): does the one
    with the larger I gain more? (one-sided sign test)"""
    pairs = prediction.matched_pairs(table.x["pass@1"], table.recipe, caliper)
    dI = [table.x["I"][i] - table.x["I"][j] for i, j in pairs]
    dg = [table.gain[i] - table.gain[j] for i, j in pairs]
    agree, n, p = prediction.sign_test(dI, dg)
    return Pairs(pairs, agree, n, p)


@dataclass
class Analysis:
    """The pre-registered analysis of one set of recipes."""

    scores: dict[str, Score]     # every predictor's out-of-recipe R² and ρ
    incremental: Incremental     # claim 1
    pairs: Pairs                 # claim 2

    @property
    def winner(self) -> str:
        """The predictor with the largest out-of-recipe R² (a description, not a claim)."""
        return max(self.scores, key=lambda p: self.scores[p].r2.value)


def analyse(table: Table, params: PredictorParams) -> Analysis:
    """Every predictor's out-of-recipe score, the incremental claim and the matched pairs."""
    return Analysis({p: score_predictor(table, p) for p in PREDICTORS},
                    incremental_value(table, params.n_perm, params.seed),
                    matched(table, params.caliper))


# ------------------------------------------------------------------------ the figures
CHECKPOINT_STYLES = ("-", "--", ":")   # a pilot recipe's earliest, middle and latest checkpoint


def pilot_figure(pilot_data: dict):
    """The pilot's learning-rate runs: one panel per recipe, the probe value's change over GRPO
    steps, colour = learning rate, line style = checkpoint (earliest solid); one key in a panel
    of its own instead of a legend over each panel's data; the dashed line is the collapse rule."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from vgh_lib.common import plots

    recipes = list(pilot_data["recipes"])
    lrs = list(PILOT["lrs"])
    colours = plots.palette(len(lrs))
    fig, axes = plt.subplots(1, len(recipes) + 1, figsize=plots.figsize(3.6 * len(recipes) + 2, 3.6),
                             gridspec_kw={"width_ratios": [3] * len(recipes) + [1.7]})
    for ax, name in zip(axes, recipes):
        runs = [r for r in pilot_data["lr_runs"] if r["recipe"] == name]
        steps = sorted({r["step"] for r in runs})
        for run in runs:
            v = np.array(run["probe_value"])
            ax.plot(run["probe_steps"], v - v[0], marker="o", ms=3, lw=1.2,
                    color=colours[lrs.index(run["lr"])],
                    ls=CHECKPOINT_STYLES[min(steps.index(run["step"]), len(CHECKPOINT_STYLES) - 1)])
        ax.axhline(-PILOT["collapse_tolerance"], color="k", ls="--", lw=0.8)
        ax.set_title(f"{name.removeprefix('pilot: ')}\ncheckpoints {', '.join(map(str, steps))}",
                     fontsize=9)
        ax.set_xlabel("GRPO step")
    for ax in axes[1:len(recipes)]:
        ax.sharey(axes[0])
    axes[0].set_ylabel("probe value − start")
    key = axes[-1]
    key.axis("off")
    handles = ([Line2D([], [], color=c, lw=2, label=f"lr {lr:g}") for c, lr in zip(colours, lrs)]
               + [Line2D([], [], color="0.3", ls=ls, label=which)
                  for ls, which in zip(CHECKPOINT_STYLES, ("earliest", "middle", "latest"))]
               + [Line2D([], [], color="k", ls="--", lw=0.8, label="collapse limit")])
    key.legend(handles=handles, loc="center left", fontsize=9, frameon=False, borderaxespad=0)
    fig.suptitle(f"09 pilot: the rule chose lr {pilot_data['chosen_lr']:g}", fontsize=9)
    return fig


# ------------------------------------------------------------------------ the panel
R2_FLOOR = -1.0   # the panel's R² axis and table stop here; lower interval ends read "< −1"
SCORE_LABELS = {"r2": "R² out of recipe", "rho": "ρ out of recipe"}


RECIPES_HEADER = ["recipe", "seed", "checkpoint steps", "pretraining pass@1"]


def recipe_seeds_of(params: PredictorParams, trajectories: dict[str, list]) -> list[int]:
    """The trajectory seed of each recipe in ``trajectories`` (``params.recipe_seeds`` holds
    one per recipe of ``params.recipes``)."""
    seed_of = dict(zip(params.recipes, params.recipe_seeds))
    return [seed_of[r] for r in trajectories]


def recipe_rows(params: PredictorParams, trajectories: dict[str, list]) -> list[list[str]]:
    """One row per recipe: its seed, its learning-region checkpoints and their pass@1 range."""
    return [[r, str(s), ", ".join(str(c.step) for c in cps),
             f"{cps[0].metrics['pass1']:.2f} – {cps[-1].metrics['pass1']:.2f}"]
            for (r, cps), s in zip(trajectories.items(), recipe_seeds_of(params, trajectories))]


CHECKPOINT_PREDICTORS = ("I", "S", "H", "learnability", "pass@1", "short RL")   # the columns shown
CHECKPOINT_HEADER = ["recipe", "step", *CHECKPOINT_PREDICTORS, "gain ± SE"]


def checkpoint_rows(table: Table) -> list[list[str]]:
    """One row per checkpoint: a few of its predictors and its mean gain over GRPO seeds."""
    return [[r["recipe"], str(r["step"]), *(f"{r[p]:.3g}" for p in CHECKPOINT_PREDICTORS),
             f"{r['gain']:+.3f} ± {r['gain SE']:.3f}"] for r in table.as_rows()]


def panel_order(analysis: Analysis) -> list[str]:
    """The predictors, best out-of-recipe R² first."""
    return sorted(analysis.scores, key=lambda p: -analysis.scores[p].r2.value)


def panel_rows(analysis: Analysis, cost: dict[str, float]) -> list[list[str]]:
    """One table row per predictor: name, R² and ρ out of recipe with intervals, cost."""
    rows = []
    for n in panel_order(analysis):
        r2, rho = analysis.scores[n].r2, analysis.scores[n].rho
        rows.append([n, glue.interval_text(r2.value, r2.lo, r2.hi, floor=R2_FLOOR),
                     glue.interval_text(rho.value, rho.lo, rho.hi), f"{cost[n]:.3g}"])
    return rows


PANEL_HEADER = ["predictor", f"{SCORE_LABELS['r2']} [95% CI]", f"{SCORE_LABELS['rho']} [95% CI]",
                "cost / GRPO run"]


def panel_figure(analysis: Analysis, cost: dict[str, float], title: str):
    """Out-of-recipe R² and ρ of every predictor with their intervals, and each one's cost."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    names = panel_order(analysis)
    fig, axes = plt.subplots(1, 3, figsize=plots.figsize(13, 4.2), sharey=True,
                             gridspec_kw={"width_ratios": [3, 3, 2]})
    for ax, key in zip(axes[:2], ("r2", "rho")):
        iv = [getattr(analysis.scores[n], key) for n in names]
        # an R² interval is drawn from the floor up (or from the estimate, when that is lower)
        lo = [min(i.value, max(i.lo, R2_FLOOR)) if key == "r2" else i.lo for i in iv]
        plots.intervals(ax, names, [i.value for i in iv], lo, [i.hi for i in iv], reference=0.0)
        ax.set_xlabel(SCORE_LABELS[key] + " (95 % CI)")
    axes[0].set_xlim(left=min(R2_FLOOR, min(analysis.scores[n].r2.value for n in names)) - 0.05)
    axes[2].barh(range(len(names)), [cost[n] for n in names], color="0.5")
    axes[2].set_xscale("log")
    axes[2].set_xlabel("cost (GRPO runs)")
    fig.suptitle(title, fontsize=9)
    return fig


def check_design(pilot: dict, chosen: dict, pilot_file: Path = PILOT_FILE) -> None:
    """Refuse to run a confirmation whose committed design does not name the pilot file it
    reads (:meth:`Registration.check_design`), or does not take the rate the pilot chose."""
    REGISTRATION.check_design(chosen, pilot_file)
    if chosen.get("lr") != pilot["chosen_lr"]:
        raise ValueError("the committed learning rate is not the one the pilot's rule chose")


# ------------------------------------------------------------------- power simulation
@dataclass
class Generator:
    """A parametric model of the design, fitted on the pilot: pass@1 uniform over its observed
    range; log I = cubic(pass@1) + a recipe effect + a checkpoint effect; gain = cubic(pass@1)
    + β·(log I − its stage part) + noise."""

    p_lo: float
    p_hi: float
    logI_coef: np.ndarray        # intercept and cubic coefficients (raw powers of pass@1)
    sd_recipe: float
    sd_within: float
    gain_coef: np.ndarray
    beta: float
    sd_noise: float

    @classmethod
    def from_dict(cls, data: dict) -> "Generator":
        """From the ``generator`` entry of the pilot file."""
        return cls(**{k: np.asarray(v, float) if isinstance(v, list) else v for k, v in data.items()})

    def draw(self, n_recipes: int, per_recipe: int, rng, beta: float | None = None):
        beta = self.beta if beta is None else beta
        recipe = np.repeat(np.arange(n_recipes), per_recipe)
        p1 = np.sort(rng.uniform(self.p_lo, self.p_hi, (n_recipes, per_recipe)), axis=1).ravel()
        P = np.stack([np.ones_like(p1), p1, p1 ** 2, p1 ** 3], axis=1)
        u = rng.normal(0, self.sd_recipe, n_recipes)[recipe] + rng.normal(0, self.sd_within, p1.size)
        logI = P @ self.logI_coef + u
        gain = P @ self.gain_coef + beta * u + rng.normal(0, self.sd_noise, p1.size)
        return p1, np.exp(logI), gain, recipe


def fit_generator(pass1, I, gain, recipe) -> Generator:
    """:class:`Generator` by least squares on pilot data (β: the coefficient of log I's
    non-stage part; the recipe share of that part by a one-way variance decomposition)."""
    pass1, gain = np.asarray(pass1, float), np.asarray(gain, float)
    logI, recipe = np.log(np.maximum(np.asarray(I, float), 1e-12)), np.asarray(recipe)
    P = np.stack([np.ones_like(pass1), pass1, pass1 ** 2, pass1 ** 3], axis=1)
    a, *_ = np.linalg.lstsq(P, logI, rcond=None)
    u = logI - P @ a
    means = {r: u[recipe == r].mean() for r in np.unique(recipe)}
    between = np.array([means[r] for r in recipe])
    sd_recipe = float(np.std(list(means.values()), ddof=1)) if len(means) > 1 else 0.0
    sd_within = float(np.std(u - between, ddof=1))
    A = np.column_stack([P, u])
    b, *_ = np.linalg.lstsq(A, gain, rcond=None)
    resid = gain - A @ b
    sd_noise = float(np.sqrt(resid @ resid / max(1, gain.size - A.shape[1])))
    return Generator(float(pass1.min()), float(pass1.max()), a, sd_recipe, sd_within,
                     b[:4], float(b[4]), sd_noise)


def simulate_claim(gen: Generator, n_recipes: int, per_recipe: int, n_sims: int, n_perm: int,
                   seed: int, beta: float | None = None, progress: bool = False) -> dict:
    """The incremental claim on ``n_sims`` datasets drawn from ``gen``: how often it holds
    (power, or its size at β = 0), and the coverage of the jackknife interval of ΔR²_oos for
    its mean at this design."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    holds, deltas, los, his = [], [], [], []
    for i in tqdm(range(n_sims), desc="simulated designs", disable=not progress):
        p1, I, gain, recipe = gen.draw(n_recipes, per_recipe, rng, beta)
        t = Table(recipe, np.zeros_like(recipe), {"pass@1": p1, "I": I}, gain,
                  np.zeros_like(gain), {}, 1.0, 0)
        inc = incremental_value(t, n_perm, seed + i)
        holds.append(inc.holds)
        deltas.append(inc.delta.value)
        los.append(inc.delta.lo)
        his.append(inc.delta.hi)
    truth = float(np.mean(deltas))
    covered = np.mean([lo <= truth <= hi for lo, hi in zip(los, his)])
    return {"rate": float(np.mean(holds)), "coverage": float(covered), "mean_delta": truth,
            "n_sims": n_sims, "n_perm": n_perm}


def interval_coverage(gen: Generator, n_recipes: int, per_recipe: int, n_sims: int, seed: int,
                      progress: bool = False) -> dict[str, float]:
    """How often the delete-one-recipe jackknife intervals cover the mean of their statistic
    at this design, on ``n_sims`` datasets drawn from ``gen``: out-of-recipe R² and ρ of I (log)
    and of pass@1 (cubic), and ΔR² of the incremental claim. The target is the statistic's
    mean over the simulated datasets (what a fit on ``n_recipes − 1`` recipes achieves)."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    found: dict[str, list[prediction.Interval]] = {}
    for _ in tqdm(range(n_sims), desc="interval coverage", disable=not progress):
        p1, I, gain, recipe = gen.draw(n_recipes, per_recipe, rng)
        t = Table(recipe, np.zeros_like(recipe), {"pass@1": p1, "I": I}, gain,
                  np.zeros_like(gain), {}, 1.0, 0)
        for name in ("I", "pass@1"):
            sc = score_predictor(t, name)
            found.setdefault(f"R² of {name}", []).append(sc.r2)
            found.setdefault(f"ρ of {name}", []).append(sc.rho)
        base, extra = stage_and_impact(t)
        found.setdefault("ΔR²", []).append(prediction.jackknife(
            lambda m: prediction.incremental_r2(base[m], extra[m], gain[m], recipe[m]), recipe))
    out = {}
    for key, ivs in found.items():
        truth = float(np.mean([iv.value for iv in ivs]))
        out[key] = float(np.mean([iv.lo <= truth <= iv.hi for iv in ivs]))
    return out


# --------------------------------------------------------------------------- running
def run_study(params: PredictorParams, trajectories: dict[str, list], seeds=None,
              lr: float | None = None, grpo_seeds=None) -> tuple[list[PanelPoint], list[GainRun]]:
    """The panel and the full-budget GRPO runs of every checkpoint, ``params.jobs`` at a time."""
    points = run_jobs(run_panel, panel_jobs(params, trajectories, seeds), params.jobs,
                      desc="predictor panel")
    runs = run_jobs(run_gain, gain_jobs(params, trajectories, seeds, grpo_seeds, lr=lr),
                    params.jobs, desc="GRPO runs")
    return points, runs


def run_pilot(params: PredictorParams, progress: bool = True) -> dict:
    """The pre-registered pilot on the pilot recipes: the learning-rate runs and the rule's
    choice, then one full-budget run per checkpoint at that rate (GRPO seed 0) with the panel,
    and the power of the incremental claim at the effect the pilot suggests. Returns the raw
    outputs as a JSON-ready dict (``book/data/09_pilot.json``)."""
    seeds = PILOT_SEEDS
    trajs = params.trajectories(PILOT_RECIPES, seeds, progress)
    lr_jobs = []
    for r, s in zip(PILOT_RECIPES, seeds):
        cps = trajs[r]
        for j in lr_checkpoints([c.metrics["pass1"] for c in cps]):
            for lr in PILOT["lrs"]:
                lr_jobs.append(GainJob.at(cps[j], params.pretrain_config(r, s),
                                          params.grpo_config(lr=lr, seed=0, steps=PILOT["lr_steps"]), params.device))
    lr_runs = run_jobs(run_gain, lr_jobs, params.jobs, desc="pilot: learning rates")
    drops: dict[float, list[float]] = {}
    for r in lr_runs:
        drops.setdefault(r.lr, []).append(r.largest_drop)
    lr = impact.choose_lr(drops, PILOT["collapse_tolerance"])
    points, runs = run_study(params, trajs, seeds, lr=lr, grpo_seeds=(0,))
    table = build_table(points, runs)
    gen = fit_generator(table.x["pass@1"], table.x["I"], table.gain, table.recipe)
    per_recipe = params.max_checkpoints
    power = simulate_claim(gen, len(CONFIRMATION), per_recipe, PILOT["power_sims"],
                           PILOT["power_perms"], params.seed, progress=progress)
    size = simulate_claim(gen, len(CONFIRMATION), per_recipe, PILOT["power_sims"],
                          PILOT["power_perms"], params.seed + 1, beta=0.0, progress=progress)
    name = {s: r for r, s in zip(PILOT_RECIPES, seeds)}
    return REGISTRATION.pilot_record({
        "rules": {k: list(v) if isinstance(v, tuple) else v for k, v in PILOT.items()},
        "recipes": {r: RECIPES[r] for r in PILOT_RECIPES},
        "seeds": list(seeds),
        "lr_runs": [{"recipe": name[r.trajectory], "step": r.step, "lr": r.lr,
                     "probe_steps": r.probe_steps, "probe_value": r.probe_value,
                     "largest_drop": r.largest_drop, "seconds": r.seconds} for r in lr_runs],
        "chosen_lr": lr,
        "full_runs": [{"recipe": name[r.trajectory], "step": r.step, "seed": r.seed,
                       "gain": r.gain, "largest_drop": r.largest_drop, "seconds": r.seconds,
                       "before": r.before.tolist(), "after": r.after.tolist()} for r in runs],
        "panel": [p.as_dict() for p in points],
        "generator": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                      for k, v in dataclasses.asdict(gen).items()},
        "power": power,
        "size": size,
        "seconds_per_grpo_step": float(np.mean([r.seconds for r in runs]) / params.grpo_steps),
    })


# ----------------------------------------------------- the run on recipe seeds nobody tuned on
# The registration's last section: after the confirmation, recipes and seeds nobody tuned on
# are run with the committed design and reported whatever they show. The recipe seeds below
# had never been used; the run's raw per-checkpoint, per-seed data are committed.
UNSEEN_RECIPE_SEEDS = (51, 52, 53, 54, 55, 56)
UNSEEN_FILE = REPO_ROOT / "book" / "data" / "09_unseen_recipes.json"


def make_record(points: list[PanelPoint], runs: list[GainRun], params: PredictorParams) -> dict:
    """A run's raw data, JSON-ready: per checkpoint every predictor, its cost and each GRPO
    seed's gain and largest probe drop (:func:`table_from_record` reads it back)."""
    rows = []
    for pt in points:
        mine = {r.seed: r for r in runs if r.trajectory == pt.trajectory and r.step == pt.step}
        rows.append({"recipe": pt.recipe, "trajectory": pt.trajectory, "step": pt.step,
                     "values": pt.values, "seconds": pt.seconds,
                     "gains": [mine[s].gain for s in params.grpo_seeds],
                     "largest_drops": [mine[s].largest_drop for s in params.grpo_seeds],
                     "grpo_seconds": [mine[s].seconds for s in params.grpo_seeds]})
    return {"params": params.as_dict(), "recipe_seeds": list(params.recipe_seeds),
            "grpo_seeds": list(params.grpo_seeds), "rows": rows}


def table_from_record(record: dict, tolerance: float = PILOT["collapse_tolerance"]) -> Table:
    """The :class:`Table` of a committed record (:func:`make_record`)."""
    rows = record["rows"]
    gains = [np.asarray(r["gains"], float) for r in rows]
    return Table(np.array([r["recipe"] for r in rows]), np.array([r["step"] for r in rows]),
                 {p: np.array([r["values"][p] for r in rows]) for p in PREDICTORS},
                 np.array([g.mean() for g in gains]),
                 np.array([g.std(ddof=1) / np.sqrt(g.size) if g.size > 1 else np.nan for g in gains]),
                 {p: float(np.mean([r["seconds"][p] for r in rows])) for p in PREDICTORS},
                 float(np.mean([s for r in rows for s in r["grpo_seconds"]])),
                 sum(d > tolerance for r in rows for d in r["largest_drops"]))


def record_unseen(params: PredictorParams | None = None, progress: bool = True) -> Path:
    """Run the committed design on :data:`UNSEEN_RECIPE_SEEDS` and write its raw record to
    :data:`UNSEEN_FILE` (through a temporary file: a failed run leaves the old one)."""
    import json
    import os

    params = dataclasses.replace(params or PredictorParams(), recipes=CONFIRMATION,
                                 recipe_seeds=UNSEEN_RECIPE_SEEDS)
    check_design(load_pilot(), PREDICTOR_CHOSEN)
    trajs, left_out = usable(params.trajectories(progress=progress))
    seeds = [UNSEEN_RECIPE_SEEDS[CONFIRMATION.index(r)] for r in trajs]
    points, runs = run_study(params, trajs, seeds)
    record = {"left_out": left_out, **make_record(points, runs, params)}
    tmp = UNSEEN_FILE.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, UNSEEN_FILE)
    return UNSEEN_FILE


def load_unseen(path: Path = UNSEEN_FILE) -> dict | None:
    """The committed run on recipe seeds nobody tuned on, or None before it exists."""
    return read_record(path)


def load_pilot(path: Path = PILOT_FILE) -> dict:
    """The committed pilot outputs, checked against the registered text they name."""
    return REGISTRATION.load_pilot(path)


# ------------------------------------------------------------------------------ the claims
# Registered in book/09_preregistration.md before the confirmation ran.
ALPHA = 0.05

CLAIMS = (
    ClaimSpec("p9.incremental.delta_r2", "out-of-recipe R² gained by adding log I to a cubic in pass@1 "
              "(delete-one-recipe jackknife t interval)", ">", 0.0, kind="empirical", require_ci=True,
              fails_if="I adds no out-of-recipe accuracy to stage, or its interval includes 0"),
    ClaimSpec("p9.incremental.p", "Freedman–Lane one-sided p-value of that gain in R²", "<=", ALPHA,
              kind="empirical",
              fails_if="the gain in R² is compatible with I carrying nothing beyond stage"),
    ClaimSpec("p9.pairs.p", "sign test: at matched pass@1, the checkpoint with the larger I gains more",
              "<=", ALPHA, kind="empirical",
              fails_if="at equal stage, the difference in I does not predict the difference in gain"),
    ClaimSpec("p9.collapsed_runs", "confirmation GRPO runs whose probe value fell more than 0.05 below its start",
              "<=", 0, kind="empirical",
              fails_if="the learning rate chosen on the pilot recipes damages a confirmation recipe"),
)


def claim_values(analysis: Analysis, table: Table, is_informative: bool) -> dict[str, Measured]:
    """What notebook 09 measured for each of :data:`CLAIMS`; the incremental claims' failures are
    "not shown" when the pilot's simulated power fell short of the registered target."""
    d = analysis.incremental.delta
    return {"p9.incremental.delta_r2": Measured(d.value, ci=(d.lo, d.hi), not_shown=not is_informative),
            "p9.incremental.p": Measured(analysis.incremental.p, not_shown=not is_informative),
            "p9.pairs.p": Measured(analysis.pairs.p),
            "p9.collapsed_runs": Measured(table.collapsed)}


def finding(analysis: Analysis) -> str:
    """The landing page's one line for this run."""
    winner, inc = analysis.winner, analysis.incremental
    return (f"best out-of-recipe predictor: {winner} (R² {analysis.scores[winner].r2.value:.2f}); "
            f"I {'adds' if inc.holds else 'is not shown to add'} to stage (ΔR² {inc.delta.value:+.3f}, "
            f"p = {inc.p:.3g})")


def figure_pairs(table, pairs):
    """Matched pairs at equal pass@1: the difference in gain against the difference in log I."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    fig, ax = plt.subplots(figsize=plots.figsize(5, 3.6))
    logI = np.log(np.maximum(table.x["I"], 1e-12))
    dI = [logI[i] - logI[j] for i, j in pairs.pairs]
    dg = [table.gain[i] - table.gain[j] for i, j in pairs.pairs]
    ax.scatter(dI, dg)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_xlabel("Δ log I within the pair")
    ax.set_ylabel("Δ gain within the pair")
    ax.set_title(f"{pairs.agree} of {pairs.n} pairs agree in sign; sign test p = {pairs.p:.3g}", fontsize=9)
    return fig


RUNS_HEADER = ["run", "checkpoints", "ΔR² of log I over stage [95% CI]", "Freedman–Lane p",
               "I", "matched pairs agreeing", "largest out-of-recipe R²"]


def incremental_verdict(inc: Incremental, is_informative: bool, short: bool = False) -> str:
    """Whether I adds to stage, in the chapter's words (``short``: for a table cell)."""
    if inc.holds:
        return "adds to stage" if short else \
            "adds to stage: the interval lies above 0 and the permutation test rejects"
    if short:
        return "is not shown to add to stage" + ("" if is_informative else " (the design could not show it)")
    return "is not shown to add to stage" + ("" if is_informative else
                                             ", and the pre-registration declared this null uninformative "
                                             "because the simulated power was below 80 %")


def run_row(label: str, table: Table, analysis: Analysis, verdict_text: str) -> list[str]:
    """One row of :data:`RUNS_HEADER`: a registered run's incremental claim, pairs and winner."""
    d, inc, pairs = analysis.incremental.delta, analysis.incremental, analysis.pairs
    return [label, str(len(table.gain)), f"{d.value:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]", f"{inc.p:.3g}",
            verdict_text, f"{pairs.agree} of {pairs.n}, p = {pairs.p:.3g}", analysis.winner]
