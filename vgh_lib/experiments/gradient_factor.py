"""Notebook ``11_gradient_factor``: does the gradient factor of ``I = S·H`` (the part that is not
a function of success rates) predict the gain of RL beyond the best success-rate predictor?
(issue 30; the design is pre-registered in ``book/11_preregistration.md``).

The design points are those of notebook 09: checkpoints in the learning region of six
pretraining recipes of the book's tiny GPT-2, each followed by GRPO with 09's committed design.
What is new is measured at each checkpoint before any RL:

* the **exact signal** ``S = ‖g‖`` of the expected GRPO update ``g = (1/N) Σ_x a_G(p_x) ∇p_x``
  over the 200 factor prompts (:mod:`vgh_lib.common.exact_signal`; one teacher-forced backward
  pass a prompt, no sampling), its **self** and **alignment** terms, and exact ``I = S·H``;
* the **AdamW signal** ``Σ_j (E g_j)² / sqrt(E g_j²)``, the second moment from sampled GRPO
  updates of one optimizer step's size;
* notebook 09's noisy S and I and its success-rate predictors, for comparison.

The outcome is the paired held-out gain with at least 6 GRPO seeds per checkpoint, whose
split-half reliability is measured. The primary test is the partial rank association of exact
log S with the gain given a cubic in reward-std, within recipes, by a Freedman–Lane permutation within
recipes (:func:`vgh_lib.common.prediction.partial_association_test`).

This module imports notebook 09's module on purpose: the recipes, the learning region, the
trajectories and the GRPO design are 09's, re-measured here, not a second copy of them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

import numpy as np
import torch

from vgh_lib.common import panel, prediction
from vgh_lib.common.exact_signal import adamw_signal, exact_signal, expected_update
from vgh_lib.common.parallel import run_jobs
from vgh_lib.errors import ParameterError
from vgh_lib.experiments import what_predicts_rl_gain as design09
from vgh_lib.experiments.designs import GRADIENT_CHOSEN, PREDICTOR_CHOSEN
from vgh_lib.experiments.grpo_budget import GRPOBudget
from vgh_lib.experiments.what_predicts_rl_gain import recipe_seeds_of  # noqa: F401 (notebook 11)
from vgh_lib.harness.claims import ClaimSpec, Measured
from vgh_lib.harness.params import NotebookParams, OnDevice, Workers, spec
from vgh_lib.harness.verdicts import NOT_SHOWN, Test, agreement_text, interval_text, verdict  # noqa: F401
from vgh_lib.harness.preregistration import Registration, write_json
from vgh_lib.paths import REPO_ROOT
from vgh_lib.tiny import grpo
from vgh_lib.tiny.jobs import run_gain
from vgh_lib.tiny.models import load_local
from vgh_lib.tiny.pretrain import PretrainConfig
from vgh_lib.tiny.sampling import answer_logprob, encode_prompts

# ------------------------------------------------------------------ the design (registered)
RECIPES = design09.CONFIRMATION
PILOT_SEEDS = design09.CONFIRMATION_SEEDS          # 09's confirmation: the pilot here
CONFIRMATION_SEEDS = (21, 22, 23, 24, 25, 26)
REPLICATION_SEEDS = (31, 32, 33, 34, 35, 36)       # run after the confirmation, reported whatever
PILOT_GRPO_SEEDS = (0, 1, 2, 3, 4, 5)

BASELINE = "reward std"                             # the best p-moment predictor, named in advance
PRIMARY = "S exact"
SECONDARY = ("alignment", "AdamW signal")           # each beyond BASELINE; with EXACT_VS_NOISY, Holm
EXACT_VS_NOISY = ("I exact", "I")

PREDICTORS = ("S exact", "alignment", "self term", "AdamW signal", "I exact", "S", "I", "H",
              "learnability", "reward std", "non-degenerate", "coverage", "pass@1", "NLL", "log step")
GRADIENT_TERMS = ("S exact", "alignment", "self term", "AdamW signal")

RULES = {
    "seed_choices": (6, 9),          # GRPO seeds per checkpoint the pilot may choose
    "reliability_target": 0.8,       # the within-recipe split-half reliability the rule aims at
    "grpo_budget_seconds": 600,      # projected wall time of the GRPO runs on 2 workers
    "alpha": 0.05,
    "power_target": 0.8,
    "sims": 400,                     # simulated designs of the size and power simulations
    "sim_perms": 199,                # permutations per simulated design
}

PREREGISTRATION = REPO_ROOT / "book" / "11_preregistration.md"
PILOT_FILE = REPO_ROOT / "book" / "data" / "11_pilot.json"
SIMULATION_FILE = REPO_ROOT / "book" / "data" / "11_simulation.json"
RECORDS = {"pilot": PILOT_FILE,
           "confirmation": REPO_ROOT / "book" / "data" / "11_confirmation.json",
           "replication": REPO_ROOT / "book" / "data" / "11_replication.json"}
REGISTRATION = Registration(PREREGISTRATION, PILOT_FILE, SIMULATION_FILE, RECORDS)


# ------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class GradientParams(GRPOBudget, Workers, OnDevice, NotebookParams):
    """Parameters of ``11_gradient_factor`` (the design of book/11_preregistration.md)."""

    # the run profiles: their overrides of the defaults below (the defaults are `default`)
    PROFILES: ClassVar[dict] = {"smoke": {"recipes": ("base", "noisy corpus", "one layer"),
                                          "recipe_seeds": (21, 22, 23), "pretrain_steps": 150,
                                          "n_checkpoints": 6, "n_eval": 40, "eval_samples": 8, "k": 4,
                                          "pass1_lo": 0.0, "pass1_hi": 1.0, "max_checkpoints": 4,
                                          "grpo_steps": 3, "grpo_prompts": 4, "grpo_seeds": (0, 1),
                                          "signal_batches": 3, "signal_prompts": 4, "adamw_batches": 3,
                                          "factor_prompts": 16, "coverage_k": 16, "n_perm": 19, "jobs": 1},
                                "default": {},
                                # the default design with more GRPO seeds and checkpoints per recipe
                                "paper": {"grpo_seeds": tuple(range(12)), "max_checkpoints": 10,
                                          "device": "auto"}}

    recipes: tuple[str, ...] = spec(RECIPES, choices=tuple(design09.RECIPES), help="the recipes (groups)")
    recipe_seeds: tuple[int, ...] = spec(CONFIRMATION_SEEDS, lo=0, hi=2**31 - 1,
                                         help="one trajectory seed per recipe")
    pretrain_steps: int = spec(2000, lo=10, hi=1_000_000, help="pretraining steps of every recipe")
    n_checkpoints: int = spec(20, lo=3, hi=60, help="saved checkpoints: step 0, then log-spaced")
    n_eval: int = spec(200, lo=10, hi=100_000, help="held-out prompts (the gain)")
    eval_samples: int = spec(16, lo=2, hi=1024, help="samples per prompt of the trajectory's evaluation")
    k: int = spec(8, lo=1, hi=1024, help="k of pass@k in the headroom H")
    pass1_lo: float = spec(design09.PILOT["pass1_range"][0], lo=0.0, hi=1.0, help="learning region: lowest pass@1")
    pass1_hi: float = spec(design09.PILOT["pass1_range"][1], lo=0.0, hi=1.0, help="learning region: highest pass@1")
    max_checkpoints: int = spec(design09.PILOT["max_checkpoints"], lo=2, hi=60, help="checkpoints per recipe")
    grpo_lr: float = spec(PREDICTOR_CHOSEN["lr"], lo=1e-7, hi=1.0, help="AdamW learning rate (09's committed design)")
    grpo_seeds: tuple[int, ...] = spec(tuple(range(GRADIENT_CHOSEN.get("n_grpo_seeds", 6))), lo=0, hi=2**31 - 1,
                                       help="GRPO seeds per checkpoint (their number chosen on the pilot)")
    signal_batches: int = spec(8, lo=3, hi=1000, help="independent batches of the noisy signal S")
    signal_prompts: int = spec(32, lo=1, hi=100_000, help="prompts per batch of the noisy signal S")
    adamw_batches: int = spec(8, lo=2, hi=1000, help="sampled updates of the AdamW signal's second moment")
    factor_prompts: int = spec(200, lo=4, hi=100_000, help="training prompts of the exact quantities")
    coverage_k: int = spec(64, lo=1, hi=100_000, help="K of the coverage predictor pass@K")
    n_perm: int = spec(999, lo=9, hi=1_000_000, help="permutations of each test")

    def check(self) -> None:
        if len(self.grpo_seeds) < 2:
            raise ParameterError("parameter 'grpo_seeds' needs at least 2 seeds (the split-half reliability)")
        if len(set(self.grpo_seeds)) != len(self.grpo_seeds):
            raise ParameterError("parameter 'grpo_seeds' must be distinct")
        self.design()   # 09's checks: one seed per recipe, at least 3 recipes, the learning region

    def design(self) -> design09.PredictorParams:
        """Notebook 09's parameters with this study's sizes: its trajectories and GRPO runs."""
        shared = {f.name for f in dataclasses.fields(design09.PredictorParams)} & set(self.names())
        values = {n: getattr(self, n) for n in shared - {"grpo_seeds", "n_perm"}}
        return design09.PredictorParams(**values, grpo_seeds=self.grpo_seeds)


# ------------------------------------------------------------------------------ jobs
@dataclass(frozen=True)
class PointJob:
    """Everything measured before RL at one checkpoint (:func:`run_point`)."""

    recipe: str
    path: str
    step: int
    pretrain: PretrainConfig
    signal_batches: int
    signal_prompts: int
    adamw_batches: int
    adamw_prompts: int
    group_size: int
    temperature: float
    factor_prompts: int
    k: int
    coverage_k: int
    seed: int                    # draws the noisy signal's batches (09's seed for this trajectory)
    device: str = "cpu"

    def paths(self) -> tuple[str, ...]:
        return (self.path,)


@dataclass
class Point:
    """What :func:`run_point` measured: every predictor and what each cost (seconds)."""

    recipe: str
    trajectory: int
    step: int
    values: dict[str, float]
    seconds: dict[str, float]


def gradient_terms(model, tokenizer, examples, group_size: int, temperature: float):
    """The exact signal of ``examples`` over every trainable parameter of a tiny model:
    ``(ExactSignal, g)`` (:func:`vgh_lib.common.exact_signal.exact_signal`)."""
    prompts, answers = encode_prompts(tokenizer, examples, next(model.parameters()).device)
    params = [p for p in model.parameters() if p.requires_grad]
    return exact_signal(lambda i: answer_logprob(model, prompts[i:i + 1], answers[i:i + 1], temperature)[0],
                        params, len(examples), group_size)


def sampled_updates(model, tokenizer, train, n_batches: int, n_prompts: int, group_size: int,
                    temperature: float, seed: int) -> np.ndarray:
    """``n_batches`` sampled GRPO updates of one optimizer step (``n_prompts`` prompts drawn
    without replacement from ``train``, groups of ``group_size``), (M, D)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        idx = torch.randperm(len(train), generator=gen)[:n_prompts].tolist()
        out.append(grpo.grpo_update(model, tokenizer, [train[i] for i in idx], group_size,
                                    temperature, gen).numpy())
    return np.stack(out)


def run_point(job: PointJob) -> Point:
    """Every predictor of one checkpoint on one thread, each measurement timed."""
    torch.set_num_threads(1)
    train, held_out = job.pretrain.task_obj().split()
    model, tok = load_local(job.path, job.device)
    factor = train[-job.factor_prompts:]           # disjoint from the GRPO probe prompts (09)
    t0 = time.perf_counter()
    logp = design09.answer_logprobs(model, tok, factor, job.temperature)
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    logp_ho = design09.answer_logprobs(model, tok, held_out, job.temperature)
    t_nll = time.perf_counter() - t0
    t0 = time.perf_counter()
    gram = grpo.signal_gram(model, tok, train, job.signal_batches, job.signal_prompts,
                            job.group_size, job.temperature, job.seed)
    t_signal = time.perf_counter() - t0
    sig, g = gradient_terms(model, tok, factor, job.group_size, job.temperature)
    t0 = time.perf_counter()   # S alone needs one batched backward pass, not one a prompt
    prompts, answers = encode_prompts(tok, factor, next(model.parameters()).device)
    expected_update(answer_logprob(model, prompts, answers, job.temperature),
                    [p for p in model.parameters() if p.requires_grad], job.group_size)
    t_one_pass = time.perf_counter() - t0
    t0 = time.perf_counter()
    samples = sampled_updates(model, tok, train, job.adamw_batches, job.adamw_prompts,
                              job.group_size, job.temperature, job.seed + 1)
    adamw = adamw_signal(g.numpy(), samples)
    t_adamw = time.perf_counter() - t0 + sig.seconds
    pan = panel.panel(logp, gram, job.group_size, job.k, job.coverage_k, t_eval, t_signal)
    values, seconds = dict(pan.values), dict(pan.cost)
    values["NLL"], seconds["NLL"] = float(-logp_ho.mean()), t_nll
    values["log step"], seconds["log step"] = float(np.log(job.step)), 0.0
    values.update({"S exact": sig.S, "self term": sig.self_term, "alignment": sig.alignment,
                   "AdamW signal": adamw, "I exact": sig.S * values["H"]})
    for name in ("self term", "alignment"):
        seconds[name] = t_eval + sig.seconds
    seconds["S exact"] = seconds["I exact"] = t_eval + t_one_pass
    seconds["AdamW signal"] = t_eval + t_adamw
    return Point(job.recipe, job.pretrain.seed, job.step, values, seconds)


def point_jobs(params: GradientParams, trajectories: dict[str, list], seeds) -> list[PointJob]:
    design = params.design()
    return [PointJob(r, str(c.path), c.step, design.pretrain_config(r, s), params.signal_batches,
                     params.signal_prompts, params.adamw_batches, params.grpo_prompts,
                     params.group_size, params.temperature, params.factor_prompts, params.k,
                     params.coverage_k, params.seed + 7919 * s, params.device)
            for r, s in zip(trajectories, seeds, strict=True) for c in trajectories[r]]


def run_study(params: GradientParams, trajectories: dict[str, list], seeds) -> dict:
    """The predictors and the GRPO runs of every checkpoint, ``params.jobs`` at a time, as a
    raw record (:func:`make_record`)."""
    t0 = time.time()
    points = run_jobs(run_point, point_jobs(params, trajectories, seeds), params.jobs,
                      desc="predictors")
    runs = run_jobs(run_gain, design09.gain_jobs(params.design(), trajectories, list(seeds)),
                    params.jobs, desc="GRPO runs")
    return make_record(params, points, runs, time.time() - t0)


# ------------------------------------------------------------------------ raw records
def make_record(params: GradientParams, points: list[Point], runs: list, wall_seconds: float) -> dict:
    """A run's raw data, JSON-ready: per checkpoint its predictors, their costs and every GRPO
    seed's gain and largest probe drop."""
    rows = []
    for pt in points:
        mine = {r.seed: r for r in runs if r.trajectory == pt.trajectory and r.step == pt.step}
        if set(mine) != set(params.grpo_seeds):
            raise ValueError(f"checkpoint {pt.step} of {pt.recipe!r} has GRPO seeds {sorted(mine)}, "
                             f"not {list(params.grpo_seeds)}")
        rows.append({"recipe": pt.recipe, "trajectory": pt.trajectory, "step": pt.step,
                     "values": pt.values, "seconds": pt.seconds,
                     "gains": [mine[s].gain for s in params.grpo_seeds],
                     "largest_drops": [mine[s].largest_drop for s in params.grpo_seeds],
                     "grpo_seconds": [mine[s].seconds for s in params.grpo_seeds]})
    return {"params": params.as_dict(), "grpo_seeds": list(params.grpo_seeds),
            "recipe_seeds": list(params.recipe_seeds), "rows": rows, "wall_seconds": wall_seconds}



@dataclass
class Table:
    """One row per checkpoint of a record: recipe, step, every predictor, the per-seed gains."""

    recipe: np.ndarray           # (n,)
    step: np.ndarray             # (n,)
    x: dict[str, np.ndarray]     # predictor -> (n,)
    gains: np.ndarray            # (n, seeds)
    seconds: dict[str, float]    # predictor -> mean seconds per checkpoint
    grpo_seconds: float          # mean seconds of one GRPO run
    largest_drop: float

    @property
    def gain(self) -> np.ndarray:
        return self.gains.mean(1)

    @classmethod
    def from_record(cls, record: dict, prefix: str = "") -> "Table":
        """The table of a record; ``prefix`` is put before every recipe name (to pool records
        whose recipes must stay distinct groups)."""
        rows = record["rows"]
        if not rows:
            raise ValueError("the record has no checkpoints")
        return cls(np.array([prefix + r["recipe"] for r in rows]), np.array([r["step"] for r in rows]),
                   {p: np.array([r["values"][p] for r in rows], float) for p in PREDICTORS},
                   np.array([r["gains"] for r in rows], float),
                   {p: float(np.mean([r["seconds"][p] for r in rows])) for p in PREDICTORS},
                   float(np.mean([s for r in rows for s in r["grpo_seconds"]])),
                   float(max(d for r in rows for d in r["largest_drops"])))

    @classmethod
    def pooled(cls, records: dict[str, dict]) -> "Table":
        """Several records in one table, each record's recipes a group of their own (keyed
        ``"<name>: <recipe>"``), on the GRPO seeds every record has."""
        tables = [cls.from_record(rec, f"{name}: ") for name, rec in records.items()]
        n = min(t.gains.shape[1] for t in tables)
        return cls(np.concatenate([t.recipe for t in tables]), np.concatenate([t.step for t in tables]),
                   {p: np.concatenate([t.x[p] for t in tables]) for p in PREDICTORS},
                   np.concatenate([t.gains[:, :n] for t in tables]),
                   {p: float(np.mean([t.seconds[p] for t in tables])) for p in PREDICTORS},
                   float(np.mean([t.grpo_seconds for t in tables])),
                   max(t.largest_drop for t in tables))

    @property
    def cost(self) -> dict[str, float]:
        """Each predictor's cost as a fraction of one GRPO run."""
        return {p: self.seconds[p] / self.grpo_seconds for p in PREDICTORS}


# ------------------------------------------------------------------------- analysis
BASELINE_DEGREE = 3   # the baseline enters the reduced model as a cubic


def scale(name: str, x) -> np.ndarray:
    """The registered scale of a gradient quantity in the tests: log for the positive ones;
    ``asinh(a / median |a|)`` for the alignment term, which can be negative (log-like for large
    values, linear near 0)."""
    x = np.asarray(x, float)
    if name == "alignment":
        m = float(np.median(np.abs(x)))
        return np.arcsinh(x / m) if m > 0 else x
    return np.log(np.maximum(x, 1e-300))


def beyond_baseline(table: Table, predictor: str, n_perm: int, seed: int) -> Test:
    """The partial association of ``predictor`` (on its :func:`scale`) with the gain given a
    cubic in :data:`BASELINE` and recipe indicators, its Fisher-z interval and the one-sided
    Freedman–Lane p-value permuting within recipes."""
    stat, p = prediction.partial_association_test(scale(predictor, table.x[predictor]), table.gain,
                                                  table.x[BASELINE], table.recipe, n_perm, seed,
                                                  BASELINE_DEGREE)
    covariates = BASELINE_DEGREE + len(np.unique(table.recipe)) - 1
    lo, hi = prediction.fisher_interval(stat, table.gain.size, covariates)
    return Test(f"{predictor} beyond {BASELINE}", stat, lo, hi, p)


def within_spearman(x, y, groups) -> float:
    """The mean over groups of the within-group Spearman correlation (0 for a constant group)."""
    from vgh_lib.common import stats

    out = []
    for g in np.unique(groups):
        m = groups == g
        rho = stats.spearman(x[m], y[m]) if np.ptp(x[m]) > 0 and np.ptp(y[m]) > 0 else 0.0
        out.append(rho if np.isfinite(rho) else 0.0)
    return float(np.mean(out))


def exact_against_noisy(table: Table, n_perm: int, seed: int) -> Test:
    """Does exact I rank the gains within recipes better than noisy I? The statistic is the
    difference of their mean within-recipe Spearman correlations with the gain; the one-sided
    p-value swaps the two predictors' within-recipe ranks at each checkpoint with probability
    1/2 (they are exchangeable if neither carries more information); the interval is a
    delete-one-recipe jackknife, bounded to [−2, 2]."""
    from vgh_lib.common import stats

    exact_name, noisy_name = EXACT_VS_NOISY
    g, y = table.recipe, table.gain
    a, b = np.empty(y.size), np.empty(y.size)
    for r in np.unique(g):
        m = g == r
        a[m], b[m] = stats.ranks(table.x[exact_name][m]), stats.ranks(table.x[noisy_name][m])

    def diff(u, v, mask=None):
        mask = np.ones(y.size, bool) if mask is None else mask
        return within_spearman(u[mask], y[mask], g[mask]) - within_spearman(v[mask], y[mask], g[mask])

    stat = diff(a, b)
    rng = np.random.default_rng(seed)
    count = 0
    for _ in range(n_perm):
        swap = rng.random(y.size) < 0.5
        count += diff(np.where(swap, b, a), np.where(swap, a, b)) >= stat - 1e-12
    half = prediction.jackknife_bounded(lambda m: diff(a, b, m) / 2, g)
    return Test(f"{exact_name} against {noisy_name}", stat, 2 * half.lo, 2 * half.hi,
                (1 + count) / (1 + n_perm))


@dataclass
class Score:
    """One predictor, out of recipe and within recipe."""

    rank_oos: prediction.Interval     # rank-based out-of-recipe score (bounded)
    r2_oos: prediction.Interval       # notebook 09's out-of-recipe R² (upper end ≤ 1)
    within: float                     # mean within-recipe Spearman with the gain
    disattenuated: float              # ``within`` over √(within-recipe reliability)


@dataclass
class Analysis:
    """The pre-registered analysis of one record (or a pool of them)."""

    n: int
    n_recipes: int
    reliability_half: float           # within-recipe split-half correlation of the gains
    reliability: float                # its Spearman–Brown reliability of the mean of all seeds
    reliability_overall: float        # the same without centring within recipes
    seeds_for_target: float           # seeds a within-recipe reliability of 0.8 would need
    primary: Test
    secondary: list[Test]             # Holm-corrected family
    scores: dict[str, Score]

    @property
    def ceiling(self) -> float:
        """The highest within-recipe correlation an exact predictor could reach with this
        outcome: √reliability."""
        return float(np.sqrt(max(self.reliability, 0.0)))


def reliabilities(table: Table) -> tuple[float, float, float]:
    """(split-half r within recipes, its Spearman–Brown reliability, the same overall)."""
    half, full = prediction.split_half_reliability(table.gains, table.recipe)
    return half, full, prediction.split_half_reliability(table.gains)[1]


def analyse(table: Table, n_perm: int, seed: int, alpha: float = RULES["alpha"]) -> Analysis:
    """The primary test, the Holm-corrected secondary family, the reliability of the gains and
    every predictor's scores."""
    half, rel, rel_all = reliabilities(table)
    primary = beyond_baseline(table, PRIMARY, n_perm, seed)
    primary.holds, primary.p_holm = primary.p <= alpha, primary.p
    secondary = [beyond_baseline(table, name, n_perm, seed + 1 + i) for i, name in enumerate(SECONDARY)]
    secondary.append(exact_against_noisy(table, n_perm, seed + 1 + len(SECONDARY)))
    for test, adjusted in zip(secondary, prediction.holm_adjusted([t.p for t in secondary])):
        test.p_holm, test.holds = adjusted, adjusted <= alpha
    g, y = table.recipe, table.gain
    scores = {}
    for name in PREDICTORS:
        x = table.x[name]
        transform = design09.TRANSFORMS.get(name, "log" if name in ("S exact", "I exact", "AdamW signal",
                                                                   "self term") else "identity")
        r2 = prediction.jackknife(lambda m: prediction.scores(prediction.features(x[m], transform),
                                                              y[m], g[m])["r2"], g)
        within = within_spearman(x, y, g)
        scores[name] = Score(prediction.jackknife_bounded(lambda m: prediction.rank_score_oos(x[m], y[m], g[m]), g),
                             dataclasses.replace(r2, hi=min(r2.hi, 1.0)), within,
                             prediction.disattenuate(within, rel))
    n = table.gains.shape[1]
    return Analysis(y.size, len(np.unique(g)), half, rel, rel_all,
                    prediction.repetitions_for(rel, n, RULES["reliability_target"]),
                    primary, secondary, scores)


# ------------------------------------------------------------------ verdicts and words
def informative(pilot: dict) -> bool:
    """Whether the pilot's simulated power reached the registered target."""
    return pilot["power"]["rate"] >= RULES["power_target"]


def answer_sentence(analysis: Analysis, is_informative: bool, label: str) -> str:
    """The chapter's one-sentence answer for one registered run."""
    t = analysis.primary
    core = (f"the partial correlation of log exact S with the gain, at equal reward-std within a "
            f"recipe, was {interval_text(t)} (95 % interval; within-recipe permutation p = {t.p:.3g})")
    if t.holds:
        return f"Yes on the {label}: {core}, so the gradient factor added to success rates."
    if is_informative:
        return f"No on the {label}: {core}, although the design had the registered power."
    return (f"Not shown on the {label}: {core}; the design had less than the registered power "
            f"to show an effect of the pilot's size, so this is no evidence that the factor adds nothing.")


def run_rows(analyses: dict[str, Analysis], is_informative: bool) -> list[list[str]]:
    """One row per registered run: its checkpoints, the gains' reliability, the primary test
    and each secondary one, each with its own verdict."""
    rows = []
    for name, a in analyses.items():
        rows.append([name, str(a.n), f"{a.reliability:.2f}", interval_text(a.primary),
                     f"{a.primary.p:.3g}", verdict(a.primary, is_informative),
                     *(f"{t.stat:+.2f}, p_Holm {t.p_holm:.3g}: {verdict(t, True)}" for t in a.secondary)])
    return rows


SCORE_COLUMNS = ["predictor", "rank score out of recipe [95 % CI]", "R² out of recipe [95 % CI]",
                 "within-recipe ρ", "disattenuated ρ", "cost / GRPO run"]


def score_rows(analysis: Analysis, table: Table) -> list[list[str]]:
    """The scores table, best rank score first."""
    cost = table.cost
    names = sorted(PREDICTORS, key=lambda p: -analysis.scores[p].rank_oos.value)
    out = []
    for n in names:
        sc = analysis.scores[n]
        out.append([n, f"{sc.rank_oos.value:+.2f} [{sc.rank_oos.lo:+.2f}, {sc.rank_oos.hi:+.2f}]",
                    f"{sc.r2_oos.value:+.2f} [{sc.r2_oos.lo:+.2f}, {sc.r2_oos.hi:+.2f}]",
                    f"{sc.within:+.2f}", f"{sc.disattenuated:+.2f}", f"{cost[n]:.3g}"])
    return out


RUN_COLUMNS = ["run", "checkpoints", "reliability", "S exact beyond reward-std [95 % CI]", "p",
               "verdict", *(f"{n} beyond reward-std" for n in SECONDARY), "exact I − noisy I"]


# ---------------------------------------------------------------------------- figures
def figure_partial(table: Table, analysis: Analysis, title: str):
    """The primary test drawn: the gain against log exact S, both after removing a cubic in
    reward-std and the recipe means, one colour per recipe."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    rx, ry = prediction.partial_residuals(scale(PRIMARY, table.x[PRIMARY]), table.gain,
                                          table.x[BASELINE], table.recipe, BASELINE_DEGREE)
    fig, ax = plt.subplots(figsize=plots.figsize(6.4, 4.2))
    recipes = list(dict.fromkeys(table.recipe))
    for r, color in zip(recipes, plots.palette(len(recipes))):
        m = table.recipe == r
        ax.scatter(rx[m], ry[m], color=color, label=r, s=28)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_xlabel("log exact S, given reward-std and recipe")
    ax.set_ylabel("gain, given reward-std and recipe")
    ax.set_title(f"{title}: partial r = {interval_text(analysis.primary)}", fontsize=9)
    ax.legend(fontsize=9, ncol=1, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def figure_scores(analysis: Analysis, title: str):
    """Every predictor: its rank-based out-of-recipe score with its interval (left) and its
    within-recipe Spearman correlation, raw and disattenuated, against the ceiling the gains'
    reliability allows (right)."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    names = sorted(PREDICTORS, key=lambda p: -analysis.scores[p].rank_oos.value)
    fig, axes = plt.subplots(1, 2, figsize=plots.figsize(12, 5.2), sharey=True)
    iv = [analysis.scores[n].rank_oos for n in names]
    plots.intervals(axes[0], names, [i.value for i in iv], [i.lo for i in iv], [i.hi for i in iv],
                    reference=0.0)
    axes[0].set_xlabel("rank score out of recipe (95 % CI)")
    y = np.arange(len(names))
    colors = plots.palette(2)
    axes[1].scatter([analysis.scores[n].within for n in names], y, color=colors[0], label="raw")
    axes[1].scatter([analysis.scores[n].disattenuated for n in names], y, color=colors[1],
                    marker="s", label="disattenuated")
    for c in (-analysis.ceiling, analysis.ceiling):
        axes[1].axvline(c, color="0.4", ls="--", lw=1)
    axes[1].axvline(0, color="0.7", lw=0.8)
    axes[1].set_xlabel("within-recipe Spearman with the gain")
    axes[1].legend(fontsize=9, loc="lower right")
    fig.suptitle(f"{title}; dashed: ± the ceiling √reliability = {analysis.ceiling:.2f}", fontsize=9)
    return fig


# ------------------------------------------------------------------ size and power
@dataclass
class RankGenerator:
    """A model of the design for the size and power of the primary test: per recipe,
    ``z`` (the baseline) uniform over its range; ``x = a0 + a1 z + recipe effect + within``;
    ``gain = b0 + b1 z + β·within + recipe effect + noise``."""

    z_lo: float
    z_hi: float
    x_coef: tuple[float, float]
    sd_x_recipe: float
    sd_x_within: float
    y_coef: tuple[float, float]
    beta: float
    sd_y_recipe: float
    sd_noise: float

    def draw(self, n_recipes: int, per_recipe: int, rng, beta: float | None = None):
        beta = self.beta if beta is None else beta
        recipe = np.repeat(np.arange(n_recipes), per_recipe)
        z = rng.uniform(self.z_lo, self.z_hi, recipe.size)
        within = rng.normal(0, self.sd_x_within, recipe.size)
        x = self.x_coef[0] + self.x_coef[1] * z + rng.normal(0, self.sd_x_recipe, n_recipes)[recipe] + within
        y = (self.y_coef[0] + self.y_coef[1] * z + beta * within
             + rng.normal(0, self.sd_y_recipe, n_recipes)[recipe] + rng.normal(0, self.sd_noise, recipe.size))
        return x, y, z, recipe

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "RankGenerator":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})


def fit_generator(z, x, y, recipe) -> RankGenerator:
    """:class:`RankGenerator` by least squares with recipe indicators: the recipe effects' SD
    from the fitted indicators, β the gain's coefficient on ``x``'s within-recipe residual."""
    z, x, y = (np.asarray(v, float) for v in (z, x, y))
    recipe = np.asarray(recipe)
    labels = np.unique(recipe)
    D = np.column_stack([(recipe == r).astype(float) for r in labels])

    def fit(v, extra=None):
        A = np.column_stack([z, D] + ([] if extra is None else [extra]))
        coef, *_ = np.linalg.lstsq(A, v, rcond=None)
        return coef, v - A @ coef

    cx, ux = fit(x)
    cy, uy = fit(y, ux)
    dof = max(1, y.size - len(labels) - 2)
    return RankGenerator(float(z.min()), float(z.max()),
                         (float(cx[1:1 + len(labels)].mean()), float(cx[0])),
                         float(np.std(cx[1:1 + len(labels)], ddof=1)), float(np.std(ux, ddof=len(labels) + 1)),
                         (float(cy[1:1 + len(labels)].mean()), float(cy[0])), float(cy[-1]),
                         float(np.std(cy[1:1 + len(labels)], ddof=1)), float(np.sqrt(uy @ uy / dof)))


def simulate_test(gen: RankGenerator, n_recipes: int, per_recipe: int, n_sims: int, n_perm: int,
                  seed: int, beta: float | None = None, alpha: float = RULES["alpha"],
                  progress: bool = False) -> dict:
    """How often the primary test rejects on ``n_sims`` designs drawn from ``gen`` (its size at
    β = 0, its power otherwise), with the binomial standard error of that rate."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    hits = 0
    for i in tqdm(range(n_sims), desc="simulated designs", disable=not progress):
        x, y, z, recipe = gen.draw(n_recipes, per_recipe, rng, beta)
        hits += prediction.partial_association_test(x, y, z, recipe, n_perm, seed + i,
                                                    BASELINE_DEGREE)[1] <= alpha
    rate = hits / n_sims
    return {"rate": rate, "se": float(np.sqrt(rate * (1 - rate) / n_sims)), "n_sims": n_sims,
            "n_perm": n_perm, "beta": gen.beta if beta is None else beta}


def registration_simulation(seed: int = 0, progress: bool = False) -> dict:
    """The size and power simulation committed with the registration, before any new data:
    the generator is fitted to notebook 09's committed pilot (reward-std, log of its noisy S,
    the gain of GRPO seed 0; the only data that existed), and the test is simulated at the
    confirmation's design (6 recipes × 6 checkpoints): its size at β = 0, its size with the
    recipe effect in the gain doubled, and its power at the fitted β and at twice it."""
    pilot09 = design09.load_pilot()
    pts = {(p["recipe"], p["step"]): p for p in pilot09["panel"]}
    rows = [(pts[(r["recipe"], r["step"])]["values"], r["gain"]) for r in pilot09["full_runs"]]
    recipe = [r["recipe"] for r in pilot09["full_runs"]]
    z = [v[BASELINE] for v, _ in rows]
    x = [np.log(max(v["S"], 1e-12)) for v, _ in rows]
    gen = fit_generator(z, x, [g for _, g in rows], recipe)
    n, per, sims, perms = len(RECIPES), design09.PILOT["max_checkpoints"], RULES["sims"], RULES["sim_perms"]
    strong = dataclasses.replace(gen, sd_y_recipe=2 * gen.sd_y_recipe)
    return {"generator": gen.as_dict(), "source": "book/data/09_pilot.json",
            "size": simulate_test(gen, n, per, sims, perms, seed, beta=0.0, progress=progress),
            "size_strong_recipe_effect": simulate_test(strong, n, per, sims, perms, seed + 1, beta=0.0,
                                                       progress=progress),
            "power_at_fit": simulate_test(gen, n, per, sims, perms, seed + 2, progress=progress),
            "power_at_twice": simulate_test(gen, n, per, sims, perms, seed + 3, beta=2 * gen.beta,
                                            progress=progress)}


# --------------------------------------------------------------------- the pilot's rule
def choose_seeds(reliability_at_pilot: float, pilot_seeds: int, seconds_per_run: float,
                 n_runs_per_seed: int, workers: int) -> dict:
    """The registered rule for the number of GRPO seeds: the smallest of
    :data:`RULES` ``seed_choices`` whose projected within-recipe reliability (Spearman–Brown from
    the pilot's) reaches the target and whose projected GRPO wall time fits the budget; if none
    reaches the target, the largest that fits (the smallest choice if none fits)."""
    choices = RULES["seed_choices"]
    fits = [n for n in choices if n * n_runs_per_seed * seconds_per_run / workers <= RULES["grpo_budget_seconds"]]
    projected = {n: prediction.spearman_brown(reliability_at_pilot, n / pilot_seeds) for n in choices}
    good = [n for n in fits if projected[n] >= RULES["reliability_target"]]
    chosen = min(good) if good else (max(fits) if fits else min(choices))
    return {"n_grpo_seeds": chosen, "projected_reliability": {str(n): projected[n] for n in choices},
            "fits_budget": fits}


def run_pilot(params: GradientParams, progress: bool = True) -> dict:
    """The pre-registered pilot: 09's confirmation recipes and seeds with 6 GRPO seeds, the
    seeds rule (:func:`choose_seeds`) and the primary test's size and power at the pilot's
    effect. Returns the raw outputs as committed (``book/data/11_pilot.json``)."""
    params = dataclasses.replace(params, recipes=RECIPES, recipe_seeds=PILOT_SEEDS, grpo_seeds=PILOT_GRPO_SEEDS)
    trajs, left_out = design09.usable(params.design().trajectories(progress=progress))
    record = run_study(params, trajs, [PILOT_SEEDS[RECIPES.index(r)] for r in trajs])
    table = Table.from_record(record)
    half, rel, _ = reliabilities(table)
    rule = choose_seeds(rel, len(PILOT_GRPO_SEEDS), table.grpo_seconds, table.gain.size, 2)
    gen = fit_generator(table.x[BASELINE], np.log(np.maximum(table.x[PRIMARY], 1e-300)), table.gain, table.recipe)
    n, per = len(trajs), params.max_checkpoints
    return REGISTRATION.pilot_record({
        "rules": {k: list(v) if isinstance(v, tuple) else v for k, v in RULES.items()},
        "left_out": left_out, **record,
        "reliability_half": half, "reliability": rel, "seed_rule": rule,
        "generator": gen.as_dict(),
        "power": simulate_test(gen, n, per, RULES["sims"], RULES["sim_perms"], params.seed, progress=progress),
        "size": simulate_test(gen, n, per, RULES["sims"], RULES["sim_perms"], params.seed + 1, beta=0.0,
                              progress=progress)})


def load_pilot(path: Path | None = None) -> dict:
    """The committed pilot outputs, checked against the registered text they name."""
    return REGISTRATION.load_pilot(path)


def check_design(pilot: dict, chosen: dict = GRADIENT_CHOSEN) -> None:
    """Refuse a confirmation whose committed design does not name the pilot file it reads, or
    does not take the number of GRPO seeds the pilot's rule chose."""
    REGISTRATION.check_design(chosen)
    if chosen.get("n_grpo_seeds") != pilot["seed_rule"]["n_grpo_seeds"]:
        raise ValueError("the committed number of GRPO seeds is not the one the pilot's rule chose")


SIMULATION_COLUMNS = ["simulated rejection rate of the primary test at 0.05", "share ± SE"]


def simulation_rows(sim: dict, pilot: dict) -> list[list[str]]:
    """The registered simulation (size under the fitted generator and with the recipe effect
    doubled, power at the fitted β and twice it) and the pilot's size and power, as table rows."""
    rate = lambda d: f"{d['rate']:.3f} ± {d['se']:.3f}"  # noqa: E731
    return [["size, fitted generator", rate(sim["size"])],
            ["size, recipe effect in the gain doubled", rate(sim["size_strong_recipe_effect"])],
            ["power at the fitted β (09's noisy S)", f"{sim['power_at_fit']['rate']:.3f}"],
            ["power at twice that β", f"{sim['power_at_twice']['rate']:.3f}"],
            ["pilot: size", rate(pilot["size"])],
            ["pilot: power at the pilot's β (exact S)", f"{pilot['power']['rate']:.3f}"]]


def load_simulation(path: Path | None = None) -> dict:
    """The size and power simulation committed with the registration, checked against the
    registered text it names."""
    return REGISTRATION.load_simulation(path)


def same_run(record: dict, committed: dict | None) -> str:
    """Whether this build's run is the committed record's design and, if so, how far its
    values are from it (a sentence for the chapter)."""
    if committed is None:
        return "no committed record to compare with"
    keys = ("recipe_seeds", "grpo_seeds")
    mine = {k: record[k] for k in keys}
    if mine != {k: committed[k] for k in keys} or record["params"] != committed["params"]:
        return "this run's parameters differ from the committed confirmation's, so it is not a rerun of it"
    a = np.array([g for r in record["rows"] for g in r["gains"]])
    b = np.array([g for r in committed["rows"] for g in r["gains"]])
    if a.shape != b.shape:
        return "this rerun has other checkpoints than the committed confirmation"
    return (f"this rerun of the committed confirmation differs from it by at most {np.abs(a - b).max():.2g} "
            f"in a gain (floating point differs between machines)")


def load_record(stage: str) -> dict | None:
    """A committed registered run (``pilot``, ``confirmation`` or ``replication``), or None
    when it has not been run yet."""
    return REGISTRATION.load_record(stage)


def record_stage(stage: str, params: GradientParams | None = None, progress: bool = True) -> Path:
    """Run one registered stage with the committed design and write its raw record under
    ``book/data`` (atomically): ``pilot`` (:func:`run_pilot`), ``confirmation`` (recipe seeds
    :data:`CONFIRMATION_SEEDS`) or ``replication`` (:data:`REPLICATION_SEEDS`)."""
    REGISTRATION.check_stage(stage)
    params = params or GradientParams()
    if stage == "pilot":
        data = run_pilot(params, progress)
    else:
        check_design(load_pilot())
        seeds = CONFIRMATION_SEEDS if stage == "confirmation" else REPLICATION_SEEDS
        params = dataclasses.replace(params, recipes=RECIPES, recipe_seeds=seeds)
        trajs, left_out = design09.usable(params.design().trajectories(progress=progress))
        data = {"stage": stage, "left_out": left_out,
                **run_study(params, trajs, [seeds[RECIPES.index(r)] for r in trajs])}
    write_json(RECORDS[stage], data)
    return RECORDS[stage]


if __name__ == "__main__":   # python -m vgh_lib.experiments.gradient_factor STAGE
    import sys

    REGISTRATION.main(sys.argv[1:], "vgh_lib.experiments.gradient_factor", record_stage, registration_simulation)


# ------------------------------------------------------------------------------ the claims
SECONDARY_CLAIMS = (("alignment", "the alignment term adds to reward-std"),
                    ("adamw", "the AdamW signal adds to reward-std"),
                    ("exact_vs_noisy", "exact I ranks the gains better than noisy I"))

CLAIMS = (
    ClaimSpec("p11.primary.p", "one-sided within-recipe Freedman–Lane p of log exact S beyond a cubic in "
              "reward-std (partial r {stat})", "<=", RULES["alpha"], kind="empirical",
              fails_if="the data do not show that exact S adds to reward-std"),
    *(ClaimSpec(f"p11.{key}.p_holm", "Holm-adjusted p: " + what + " (statistic {stat})", "<=", RULES["alpha"],
                kind="empirical", fails_if=f"the data do not show that {what}")
      for key, what in SECONDARY_CLAIMS),
)


def claim_values(analysis: Analysis, is_informative: bool) -> dict[str, Measured]:
    """What notebook 11 measured for each of :data:`CLAIMS`; a failure of the primary claim is
    "not shown" when the registration declared the design uninformative."""
    out = {"p11.primary.p": Measured(analysis.primary.p, fields={"stat": interval_text(analysis.primary)},
                                     not_shown=not is_informative)}
    for test, (key, _) in zip(analysis.secondary, SECONDARY_CLAIMS):
        out[f"p11.{key}.p_holm"] = Measured(test.p_holm, fields={"stat": interval_text(test)})
    return out


def finding(analysis: Analysis, is_informative: bool) -> str:
    """The landing page's one line for this run."""
    return (f"log exact S beyond reward-std: partial r {interval_text(analysis.primary)}, "
            f"p = {analysis.primary.p:.3g}: {verdict(analysis.primary, is_informative)}")
