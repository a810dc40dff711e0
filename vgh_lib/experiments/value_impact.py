"""Notebook ``05_value_impact``: value impact along a pretraining trajectory, pre-registered
(book/theory.md §4, the paper's Figure 1, reconstructed).

The rules that choose the design (``PILOT`` and the functions under it) were written down
before the pilot ran (``book/05_preregistration.md``); none of them looks at I, S, H or any
gain. The design they chose is :data:`vgh_lib.experiments.designs.PILOT_CHOSEN`. The jobs
(:class:`GainJob`, :class:`FactorJob`) are frozen dataclasses that a process pool or a Dask
cluster runs unchanged; the inference is :func:`vgh_lib.common.impact.analyse`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from vgh_lib.common.impact import (
    Analysis,
    CheckpointData,
    analyse,
    choose_lr,
    pilot_checkpoints,
    mean_passk,
    mid_checkpoint,
    nested_bootstrap,
    percentile_ci,
    predictor_table,  # noqa: F401 (notebook 05's predictor tables)
)
from vgh_lib.common.parallel import run_jobs
from vgh_lib.errors import ParameterError
from vgh_lib.experiments.designs import PILOT_CHOSEN
from vgh_lib.experiments.grpo_budget import GRPOBudget
from vgh_lib.experiments.pretraining_trajectory import PAPER_TRAJECTORY, SMOKE_TRAJECTORY, ConfirmationParams
from vgh_lib.harness.claims import ClaimSpec, Measured
from vgh_lib.harness.params import Workers, spec
from vgh_lib.tiny.jobs import Factors, GainJob, GainRun, run_factors, run_gain  # shared with 07, 09, 11
from vgh_lib.tiny.pretrain import PretrainConfig


@dataclass(frozen=True)
class ValueImpactParams(GRPOBudget, Workers, ConfirmationParams):
    """Parameters of ``05_value_impact`` (book/theory.md §4, the paper's Figure 1).

    ``seed`` is the *pilot* trajectory (the design was chosen on it); the confirmation runs on
    the trajectories ``confirmation_seeds`` with checkpoints at ``checkpoint_grid``.
    """

    # the run profiles: their overrides of the defaults below (the defaults are `default`)
    PROFILES: ClassVar[dict] = {"smoke": {**SMOKE_TRAJECTORY, "grpo_steps": 3, "grpo_prompts": 4,
                                          "checkpoint_grid": (20, 40, 80, 150),
                                          "grpo_seeds": (0, 1), "signal_batches": 3, "signal_prompts": 4,
                                          "factor_prompts": 8, "n_boot": 50, "n_perm": 100,
                                          "pilot": False, "jobs": 1},
                                "default": {},
                                # the default design, its grid scaled to the longer trajectory
                                "paper": {**PAPER_TRAJECTORY, "grpo_steps": 200, "grpo_prompts": 32,
                                          "grpo_seeds": (0, 1, 2, 3, 4, 5, 6, 7), "signal_prompts": 128,
                                          "checkpoint_grid": tuple(round(s * 20_000 / 3000) for s in
                                                                   PILOT_CHOSEN["checkpoint_grid"])}}

    grpo_steps: int = spec(PILOT_CHOSEN["grpo_steps"], lo=1, hi=100_000,
                           help="GRPO budget: optimizer steps (chosen on the pilot)")
    adamw_lr: float = spec(PILOT_CHOSEN["adamw_lr"], lo=1e-7, hi=1.0, help="AdamW learning rate")
    sgd_lr: float = spec(PILOT_CHOSEN["sgd_lr"], lo=1e-7, hi=100.0, help="SGD learning rate")
    grpo_seeds: tuple[int, ...] = spec((0, 1, 2, 3), lo=0, hi=2**31 - 1, help="GRPO seeds per checkpoint")
    n_boot: int = spec(2000, lo=10, hi=100_000, help="nested-bootstrap resamples")
    n_perm: int = spec(10_000, lo=10, hi=1_000_000, help="permutations of the p-value")
    pilot: bool = spec(True, help="rerun the pilot and show what the pre-registered rules choose")

    def gain_jobs(self, trajectories: dict[int, list]) -> list[GainJob]:
        """The confirmation: every checkpoint × optimizer (AdamW, SGD at their committed rates)
        × GRPO seed."""
        return [GainJob.at(c, self.confirmation_config(s), self.grpo_config(lr=lr, seed=seed_, optimizer=opt),
                           self.device)
                for s, cps in trajectories.items() for c in cps
                for opt, lr in (("adamw", self.adamw_lr), ("sgd", self.sgd_lr))
                for seed_ in self.grpo_seeds]

    def check(self) -> None:
        super().check()
        if self.seed in self.confirmation_seeds:
            raise ParameterError(f"parameter 'confirmation_seeds' = {self.confirmation_seeds} must "
                                 f"not contain the pilot trajectory 'seed' = {self.seed}")
        if len(self.grpo_seeds) < 2:
            raise ParameterError("parameter 'grpo_seeds' needs at least 2 GRPO seeds for intervals")


# ------------------------------------------------------------ the pre-registered design
# Written down before the pilot ran (book/05_preregistration.md); none of these rules looks at
# I, S, H or any gain.
PILOT = {
    "trajectory_seed": 0,
    "pass1_targets": (0.25, 0.5, 0.9),
    "lrs": {"adamw": (1e-3, 3e-4, 1e-4, 3e-5, 1e-5),
            "sgd": (10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01)},
    "steps": 20,
    "collapse_tolerance": 0.05,
    "passk_range": (0.1, 0.99),
    "grid_size": 9,
    "step_choices": (60, 40, 30),
    "grpo_budget_s": 300.0,
    "workers": 2,
}

# Each rule of book/05_preregistration.md in one line, keyed as the design it chooses
# (designs.PILOT_CHOSEN); notebook 05 shows them beside the committed and the re-derived values.
RULE_TEXT = {
    "adamw_lr": "AdamW: the largest rate whose probe never fell more than 0.05 below its start "
                "on any pilot checkpoint",
    "sgd_lr": "SGD: the same rule on its own grid",
    "grpo_steps": "the most steps of (60, 40, 30) whose confirmation runs fit 300 s on 2 workers "
                  "at the pilot's measured time per step (else the fewest)",
    "checkpoint_grid": "checkpoint steps spaced geometrically between where pass@8 reaches "
                       "0.1 and 0.99, plus the last",
}


def crossing_step(steps, values, level: float) -> float:
    """The first step where ``values`` reaches ``level``, interpolated linearly in log(step + 1)."""
    x, y = np.log(np.asarray(steps, float) + 1), np.asarray(values, float)
    for j in range(1, len(y)):
        if y[j] >= level > y[j - 1]:
            frac = (level - y[j - 1]) / (y[j] - y[j - 1])
            return float(np.exp(x[j - 1] + frac * (x[j] - x[j - 1])) - 1)
    raise ValueError(f"the curve never crosses {level} from below")


def learning_region_grid(steps, passk, total: int, size: int = PILOT["grid_size"],
                         passk_range=PILOT["passk_range"]) -> tuple[int, ...]:
    """``size`` checkpoint steps geometrically spaced between the steps where pass@k reaches
    the two ends of ``passk_range``, plus the last step ``total``."""
    lo, hi = (crossing_step(steps, passk, level) for level in passk_range)
    grid = np.unique(np.round(np.geomspace(max(lo, 1.0), hi, size)).astype(int))
    return tuple(int(g) for g in grid) + ((total,) if total > grid[-1] else ())


def pilot_jobs(checkpoints, pretrain: PretrainConfig, params: "ValueImpactParams") -> list["GainJob"]:
    """Every (pilot checkpoint × optimizer × learning rate) run of the pilot, GRPO seed 0."""
    return [GainJob.at(c, pretrain, params.grpo_config(lr=lr, seed=0, optimizer=opt, steps=PILOT["steps"]),
                       params.device)
            for c in checkpoints for opt, lrs in PILOT["lrs"].items() for lr in lrs]


def choose_design(pilot_runs: list["GainRun"]) -> dict:
    """Apply the pre-registered rules to the pilot runs: the learning rate of each optimizer,
    and the measured seconds per GRPO step (for :func:`steps_for_budget`)."""
    lrs = {}
    for opt in PILOT["lrs"]:
        drops: dict[float, list[float]] = {}
        for r in pilot_runs:
            if r.optimizer == opt:
                drops.setdefault(r.lr, []).append(r.largest_drop)
        lrs[opt] = choose_lr(drops, PILOT["collapse_tolerance"])
    per_step = float(np.mean([r.seconds / PILOT["steps"] for r in pilot_runs]))
    return {"lr": lrs, "seconds_per_step": per_step}


def steps_for_budget(seconds_per_step: float, n_runs: int, choices=PILOT["step_choices"],
                     budget_s: float = PILOT["grpo_budget_s"],
                     workers: int = PILOT["workers"]) -> int:
    """The largest number of GRPO steps whose predicted wall time fits the budget."""
    for steps in sorted(choices, reverse=True):
        if seconds_per_step * steps * n_runs / workers <= budget_s:
            return steps
    return min(choices)


# ------------------------------------------------------------------- the experiment
# Jobs are frozen dataclasses: a process pool or a Dask cluster sends them unchanged, and
# ``paths()`` names what a worker must be able to see (vgh_lib.common.parallel checks it).
# ------------------------------------------------------------------------- the analysis
def checkpoint_data(factors: list[Factors], runs: list[GainRun], optimizer: str,
                    trajectory: int) -> list[CheckpointData]:
    """Assemble one trajectory's checkpoints for one optimizer, in step order."""
    out = []
    for f in sorted((f for f in factors if f.trajectory == trajectory), key=lambda f: f.step):
        mine = sorted((r for r in runs if r.trajectory == trajectory and r.step == f.step
                       and r.optimizer == optimizer), key=lambda r: r.seed)
        if not mine:
            raise ValueError(f"no {optimizer} runs at step {f.step} of trajectory {trajectory}")
        out.append(CheckpointData(f.step, f.gram, f.successes, f.n_samples, f.k,
                                  np.stack([r.after - r.before for r in mine])))
    return out




# -------------------------------------------------------------- what notebook 05 runs
@dataclass
class Pilot:
    """The pilot on trajectory ``params.seed`` and the design its pre-registered rules choose.

    Notebooks 05 and 08 rerun their pilots live and draw them (this object, with its runs);
    the pilots of 09–12 return the JSON record they commit under ``book/data`` (a dict whose
    SHA-256 the committed design names), so the two kinds differ on purpose."""

    checkpoints: list                  # the pilot checkpoints (pilot_checkpoints)
    runs: list[GainRun]
    seconds_per_step: float
    chosen: dict                       # the rule's design, keyed as designs.PILOT_CHOSEN
    same: dict[str, bool]              # per key: the rule's choice equals the committed one


def run_pilot(params: ValueImpactParams) -> Pilot:
    """Rerun the pilot (GRPO seed 0 at the pilot checkpoints, every optimizer and rate of
    ``PILOT``) and apply the rules; the committed design is never changed by it."""
    cfg = params.pretrain_config()
    traj = params.trajectory()
    cps = [traj[i] for i in pilot_checkpoints([c.metrics["pass1"] for c in traj], PILOT["pass1_targets"])]
    runs = run_jobs(run_gain, pilot_jobs(cps, cfg, params), params.jobs, desc="pilot runs")
    design = choose_design(runs)
    grid = learning_region_grid([c.step for c in traj], [c.metrics["passk"] for c in traj],
                                params.pretrain_steps)
    n_runs = len(params.confirmation_seeds) * len(grid) * len(params.grpo_seeds) * 2
    chosen = {"adamw_lr": design["lr"]["adamw"], "sgd_lr": design["lr"]["sgd"],
              "grpo_steps": steps_for_budget(design["seconds_per_step"], n_runs),
              "checkpoint_grid": tuple(grid)}
    return Pilot(cps, runs, design["seconds_per_step"], chosen,
                 {key: chosen[key] == PILOT_CHOSEN[key] for key in chosen})


def run_confirmation(params: ValueImpactParams, trajectories: dict[int, list]
                     ) -> tuple[list[Factors], list[GainRun]]:
    """The confirmation's pre-RL factors and GRPO runs, ``params.jobs`` at a time."""
    factors = run_jobs(run_factors, params.factor_jobs(trajectories), params.jobs,
                       desc="factors (S, H)")
    runs = run_jobs(run_gain, params.gain_jobs(trajectories), params.jobs, desc="GRPO runs")
    return factors, runs


OPTIMIZERS = ("adamw", "sgd")   # the confirmation's two arms, in the order every table shows


def analyse_confirmation(params: ValueImpactParams, factors: list[Factors],
                         runs: list[GainRun]) -> dict[str, Analysis]:
    """The pre-registered inference per optimizer (:func:`vgh_lib.common.impact.analyse`)."""
    return {opt: analyse([checkpoint_data(factors, runs, opt, s) for s in params.confirmation_seeds],
                         opt, params.n_boot, params.n_perm, seed=params.seed)
            for opt in OPTIMIZERS}


def in_learning_region(factors: list[Factors], trajectory: int,
                       passk_range=PILOT["passk_range"]) -> int:
    """How many of a trajectory's checkpoints have pass@k within ``passk_range``."""
    lo, hi = passk_range
    return sum(1 for f in factors if f.trajectory == trajectory
               and lo <= mean_passk(f.successes, f.n_samples, f.k) <= hi)


def collapsed(runs: list[GainRun], optimizer: str,
              tolerance: float = PILOT["collapse_tolerance"]) -> list[GainRun]:
    """The runs of ``optimizer`` whose probe value fell more than ``tolerance`` below its start."""
    return [r for r in runs if r.optimizer == optimizer and r.largest_drop > tolerance]


@dataclass
class ConfirmationMidGain:
    """The AdamW gain at the checkpoint of one trajectory whose pass@1 is closest to 0.5."""

    step: int
    pass1: float
    gain: float
    ci: tuple[float, float]            # nested bootstrap over seeds and held-out prompts


def mid_checkpoint_gain(params: ValueImpactParams, factors: list[Factors], runs: list[GainRun],
                        trajectory: int) -> ConfirmationMidGain:
    """:func:`vgh_lib.common.impact.mid_checkpoint` of one confirmation trajectory (by the
    held-out pass@1 before GRPO), and its AdamW gain with a nested-bootstrap interval."""
    cps = checkpoint_data(factors, runs, "adamw", trajectory)
    before = [float(np.mean([r.before for r in runs if r.trajectory == trajectory and r.step == c.step][0]))
              for c in cps]
    j = mid_checkpoint(before)
    boot = nested_bootstrap([[cps[j]]], params.n_boot, params.seed)["gain"][:, 0]
    return ConfirmationMidGain(cps[j].step, before[j], cps[j].gain(), percentile_ci(boot))


OPTIMIZER_NAMES = {"adamw": "AdamW", "sgd": "SGD"}


def _series(items: list[str], word: str) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {word} {items[-1]}"


def ranking_sentence(optimizer: str, pooled_i: float, versus_i: dict[str, tuple]) -> str:
    """One plain sentence on how I ranks the gains against every simpler predictor, each verb
    chosen by the paired difference Spearman(I) − Spearman(P) and its 95 % interval:
    "better than" when the interval lies above 0, "worse than" when below, "no better than"
    when it contains 0."""
    opt = OPTIMIZER_NAMES.get(optimizer, optimizer)
    if not np.isfinite(pooled_i):
        return (f"Under {opt}, I does not rank the checkpoints' gains in this run: its Spearman "
                f"correlation is undefined (a constant predictor or gain).")
    groups: dict[str, list[str]] = {"better than": [], "no better than": [], "worse than": []}
    for name, (d, lo, hi) in versus_i.items():
        groups["better than" if lo > 0 else "worse than" if hi < 0 else "no better than"].append(name)
    parts = [f"{verb} {_series(names, 'or' if verb == 'no better than' else 'and')}"
             for verb, names in groups.items() if names]
    verdict = ", and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
    intervals = "; ".join(f"{name} {d:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                          for name, (d, lo, hi) in versus_i.items())
    return (f"Under {opt}, I ranks the checkpoints' gains "
            f"with pooled Spearman {pooled_i:.2f}: {verdict} (Spearman of I minus that of each, "
            f"with its paired 95 % interval: {intervals}).")


def caveats_sentence(failed_claims: dict[str, list[str]], collapsed_runs: dict[str, int],
                     total_runs: dict[str, int]) -> str:
    """One plain sentence, per optimizer, of what went wrong in the confirmation: its collapsed
    runs and the ids of its failed claims ("no claim failed" when none did)."""
    parts = []
    for opt, total in total_runs.items():
        failed, n = failed_claims.get(opt, []), collapsed_runs.get(opt, 0)
        runs = f"none of its {total} runs collapsed" if n == 0 else f"{n} of its {total} runs collapsed"
        claims = ("no claim failed" if not failed else
                  "claim" + ("s " if len(failed) > 1 else " ") + _series(failed, "and") + " failed")
        parts.append(f"under {OPTIMIZER_NAMES.get(opt, opt)}, {runs} and {claims}")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


# ------------------------------------------------------------------------------ the claims
# Registered in book/05_preregistration.md before the confirmation ran.
SPEARMAN_MIN = 0.6
ALPHA = 0.05


def claims(params: ValueImpactParams) -> tuple[ClaimSpec, ...]:
    """Notebook 05's claims: per optimizer, the pooled and per-trajectory Spearman(I, gain), the
    permutation p and the collapsed runs; per trajectory, the AdamW gain at its mid checkpoint."""
    specs = []
    for opt in OPTIMIZERS:
        specs.append(ClaimSpec(
            f"s5.{opt}.impact_gain.spearman",
            f"{opt}: pooled Spearman correlation of I = S·H with the real GRPO gain (mean over "
            f"trajectories; nested-bootstrap interval)", ">=", SPEARMAN_MIN, kind="empirical",
            fails_if="I ranks the checkpoints' gains weakly: pooled Spearman below 0.6"))
        for s in params.confirmation_seeds:
            specs.append(ClaimSpec(
                f"s5.{opt}.impact_gain.spearman.traj{s}",
                f"{opt}: Spearman(I, gain) on confirmation trajectory {s}", ">=", SPEARMAN_MIN,
                kind="empirical", fails_if=f"on trajectory {s} alone, Spearman(I, gain) below 0.6"))
        specs.append(ClaimSpec(
            f"s5.{opt}.permutation_p", f"{opt}: one-sided permutation p-value of the pooled "
            "Spearman(I, gain)", "<=", ALPHA, kind="empirical",
            fails_if="the ranking of gains by I is compatible with chance (p above 0.05)"))
        specs.append(ClaimSpec(
            f"s5.{opt}.collapsed_runs",
            f"{opt}: confirmation runs whose probe value fell more than 0.05 below its start",
            "<=", 0, kind="empirical",
            fails_if="any confirmation GRPO run damages the policy (probe drop above 0.05)"))
    for s in params.confirmation_seeds:
        specs.append(ClaimSpec(
            f"grpo.mid_checkpoint_gain.traj{s}",
            f"AdamW GRPO gain at the checkpoint of trajectory {s} whose pass@1 is closest to 0.5 "
            "(step {step}); nested-bootstrap interval over seeds and prompts", ">", 0.0,
            kind="empirical", require_ci=True,
            fails_if="GRPO does not raise held-out pass@1 there, or the interval includes 0"))
    return tuple(specs)


def claim_values(params: ValueImpactParams, results: dict[str, Analysis], collapsed_runs: dict[str, list],
                 mid: dict[int, ConfirmationMidGain]) -> dict[str, Measured]:
    """What notebook 05 measured for each of :func:`claims`."""
    out = {}
    for opt, res in results.items():
        out[f"s5.{opt}.impact_gain.spearman"] = Measured(res.pooled["I"], ci=tuple(res.pooled_ci["I"]))
        for t, s in enumerate(params.confirmation_seeds):
            out[f"s5.{opt}.impact_gain.spearman.traj{s}"] = Measured(res.spearman["I"][t],
                                                                    ci=tuple(res.spearman_ci["I"][t]))
        out[f"s5.{opt}.permutation_p"] = Measured(res.p_value)
        out[f"s5.{opt}.collapsed_runs"] = Measured(len(collapsed_runs[opt]))
    for s, m in mid.items():
        out[f"grpo.mid_checkpoint_gain.traj{s}"] = Measured(m.gain, ci=tuple(m.ci), fields={"step": m.step})
    return out


def failed_by_arm(claim_list, optimizers=OPTIMIZERS) -> dict[str, list[str]]:
    """The failed claims' ids per optimizer, for :func:`caveats_sentence` (the mid-checkpoint
    claims are AdamW's)."""
    return {opt: [c.id for c in claim_list if not c.passed and (c.id.startswith(f"s5.{opt}.")
                  or (opt == "adamw" and c.id.startswith("grpo.")))] for opt in optimizers}


def finding(results: dict[str, Analysis]) -> str:
    """The landing page's one line for this run."""
    from vgh_lib.harness.glue import format_value  # "n/a" for a value a small run cannot measure

    return "pooled Spearman(I, GRPO gain): " + "; ".join(
        f"{opt} {format_value(res.pooled['I'])} (p = {format_value(res.p_value)})" for opt, res in results.items())


# ----------------------------------------------------------------------- the figures


def figure_impact_gain(results, params):
    """The paper's Figure 1, reconstructed: each checkpoint's GRPO gain (95 % interval) against its
    value impact I, per optimizer, labelled with its pretraining step."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 2, figsize=plots.figsize(11, 4.6))
    for ax, (opt, res) in zip(axes, results.items()):
        for t, s in enumerate(params.confirmation_seeds):
            I_t, g, ci = res.predictors[t]["I"], res.gain[t], res.gain_ci[t]
            ax.errorbar(I_t, g, yerr=[g - ci[:, 0], ci[:, 1] - g], fmt="o", capsize=3, color=colors[t % 10],
                        label=f"trajectory {s}: Spearman {res.spearman['I'][t]:.2f}")
        all_i = np.concatenate([res.predictors[t]["I"] for t in range(len(res.steps))])
        steps = [str(int(v)) for v in np.concatenate(res.steps)]
        plots.label_points(ax, all_i, np.concatenate(res.gain), steps, fontsize=9)  # no collisions
        ax.axhline(0, color="grey", lw=0.8)
        lr = params.adamw_lr if opt == "adamw" else params.sgd_lr
        ax.set_title(f"{opt} (lr {lr:g}): pooled Spearman {res.pooled['I']:.2f}, p = {res.p_value:.3g}",
                     fontsize=9)
        ax.set_xscale("log")  # I spans orders of magnitude and crowds near 0 on a linear axis
        ax.set_xlabel("value impact I = S·H (before RL, log scale)")
        ax.set_ylabel("GRPO gain in exact held-out pass@1")
        ax.legend(fontsize=9)
    fig.suptitle(f"05_value_impact, profile {params.profile}, trajectories {list(params.confirmation_seeds)}, "
                 f"{len(params.grpo_seeds)} GRPO seeds", fontsize=9)
    return fig


def figure_trajectory(results, params):
    """Per trajectory: the gain along pretraining per optimizer, with I, S and H scaled to it."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    a = results["adamw"]   # the checkpoints and their factors (the same for both arms)
    n_traj = len(params.confirmation_seeds)
    fig, axes = plt.subplots(1, n_traj, figsize=plots.figsize(5.5 * n_traj, 4.2),
                             squeeze=False)
    for t, s in enumerate(params.confirmation_seeds):
        ax = axes[0, t]
        x = a.steps[t]
        for opt, res in results.items():
            ci = res.gain_ci[t]
            ax.fill_between(x, ci[:, 0], ci[:, 1], alpha=0.2)
            ax.plot(x, res.gain[t], "o-", ms=3, label=f"gain ({opt})")
        pr = a.predictors[t]
        scale = max(np.max(np.abs(np.concatenate([r.gain[t] for r in results.values()]))), 1e-9)
        for name in ("I", "S", "H"):
            ax.plot(x, pr[name] / max(pr[name].max(), 1e-12) * scale, "--", lw=1, label=f"{name} (scaled)")
        ax.set_xscale("log")
        ax.set_xlabel("pretraining step")
        ax.set_ylabel("gain in pass@1")
        ax.set_title(f"trajectory {s}", fontsize=9)
        ax.legend(fontsize=9)
    fig.suptitle(f"05_value_impact, profile {params.profile}", fontsize=9)
    return fig


def figure_predictors(results, params):
    """Each predictor's pooled Spearman with the gain (95 % interval), per optimizer."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    fig, axes = plt.subplots(1, 2, figsize=plots.figsize(10, 3.2), sharex=True)
    for ax, (opt, res) in zip(axes, results.items()):
        names = list(res.pooled)
        plots.intervals(ax, names, [res.pooled[n] for n in names], [res.pooled_ci[n][0] for n in names],
                        [res.pooled_ci[n][1] for n in names], reference=0.0)
        ax.axvline(SPEARMAN_MIN, color="0.6", lw=0.8, ls=":")
        ax.set_title(opt, fontsize=9)
        ax.set_xlabel("pooled Spearman with the gain (95 % CI)")
    fig.suptitle(f"05_value_impact, profile {params.profile}; dotted: the claim's threshold "
                 f"{SPEARMAN_MIN:g}", fontsize=9)
    return fig


def figure_health(runs, params):
    """Every confirmation run's probe value minus its start, per optimizer; dashed: the collapse line."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 2, figsize=plots.figsize(11, 3.8), sharey=True)
    for ax, opt in zip(axes, OPTIMIZERS):
        plots.probe_curves(ax, [(r.probe_steps, r.probe_value,
                                 {"lw": 0.6, "alpha": 0.6, "marker": "",
                                  "color": colors[params.confirmation_seeds.index(r.trajectory) % 10]})
                                for r in runs if r.optimizer == opt], PILOT["collapse_tolerance"])
        ax.set_title(f"{opt}: probe value minus its start, every run", fontsize=9)
    axes[0].set_ylabel("ΔJ on the probe prompts")
    fig.suptitle(f"05_value_impact, profile {params.profile}", fontsize=9)
    return fig


def figure_pilot(pilot_cps, pilot_runs, chosen, params):
    """The pilot's learning-rate runs per optimizer and pilot checkpoint (solid: the chosen rate;
    dashed: the collapse line)."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    fig, axes = plt.subplots(2, len(pilot_cps), figsize=plots.figsize(4 * len(pilot_cps), 6.5), sharex=True,
                             squeeze=False)
    for row, opt in enumerate(("adamw", "sgd")):
        for col, cp in enumerate(pilot_cps):
            ax = axes[row, col]
            for r in (r for r in pilot_runs if r.optimizer == opt and r.step == cp.step):
                style = "-" if r.lr == chosen[f"{opt}_lr"] else ":"
                ax.plot(r.probe_steps, r.probe_value, style, marker="o", ms=3, label=f"lr {r.lr:g}")
            start = next(r for r in pilot_runs if r.step == cp.step).probe_value[0]
            ax.axhline(start - PILOT["collapse_tolerance"], color="grey", lw=0.8, ls="--")
            ax.set_title(f"{opt}, pilot step {cp.step}", fontsize=9)
            ax.set_xlabel("GRPO step")
            ax.set_ylabel("exact probe value J")
            ax.legend(fontsize=9)
    fig.suptitle(f"Pilot (trajectory seed {params.seed}): solid = chosen rate; dashed = collapse line. "
                 f"05_value_impact, profile {params.profile}", fontsize=9)
    return fig


def figure_pilot_not_run(params):
    """What stands in the pilot figure's place when the pilot was not rerun (``pilot=False``)."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    fig, ax = plt.subplots(figsize=plots.figsize(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"pilot not rerun (pilot=False); 05_value_impact, profile {params.profile}",
            ha="center", va="center")
    return fig


# ---------------------------------------------------------- what the chapter glues of the pilot
PILOT_TABLE_HEADER = ["rule (pre-registered)", "committed design (what ran)", "this build's re-derivation"]
NOT_RERUN = "n/a (pilot not rerun)"


def pilot_rows(pilot: Pilot | None) -> list[list[str]]:
    """Each pre-registered rule, the committed design and this build's re-derivation (if any)."""
    if pilot is None:
        return [[RULE_TEXT[k], str(v), "not rerun (pilot=False)"] for k, v in PILOT_CHOSEN.items()]
    return [[RULE_TEXT[k], str(PILOT_CHOSEN[k]), str(pilot.chosen[k])] for k in pilot.chosen]


def pilot_texts(pilot: Pilot | None) -> dict[str, str]:
    """The pilot's glued texts, by key; "n/a (pilot not rerun)" for every one when it was not."""
    if pilot is None:
        return {**{f"s5.pilot.{k}": NOT_RERUN for k in ("checkpoints", "adamw_lr", "sgd_lr", "steps", "grid",
                                                          "seconds_per_step", "adamw_1e-3_drop",
                                                          "adamw_1e-3_step")},
                "s5.pilot.same": "nothing: the pilot was not rerun in this build (pilot=False)"}
    from vgh_lib.harness.glue import format_value

    chosen, same = pilot.chosen, pilot.same
    old = [r for r in pilot.runs if r.optimizer == "adamw" and r.lr == 1e-3]
    return {"s5.pilot.checkpoints": ", ".join(str(c.step) for c in pilot.checkpoints),
            "s5.pilot.adamw_lr": format_value(chosen["adamw_lr"]),
            "s5.pilot.sgd_lr": format_value(chosen["sgd_lr"]),
            "s5.pilot.steps": str(chosen["grpo_steps"]),
            "s5.pilot.grid": ", ".join(map(str, chosen["checkpoint_grid"])),
            "s5.pilot.same": ("the same design as the committed one" if all(same.values()) else
                              "a different design from the committed one in "
                              + ", ".join(k for k, v in same.items() if not v)
                              + " (the confirmation keeps the committed design)"),
            "s5.pilot.adamw_1e-3_step": str(max(old, key=lambda r: r.largest_drop).step)}


def pilot_numbers(pilot: Pilot | None) -> dict[str, float]:
    """The pilot's glued numbers, by key (none when it was not rerun: :func:`pilot_texts` says so)."""
    if pilot is None:
        return {}
    old = [r for r in pilot.runs if r.optimizer == "adamw" and r.lr == 1e-3]
    return {"s5.pilot.seconds_per_step": pilot.seconds_per_step,
            "s5.pilot.adamw_1e-3_drop": max(r.largest_drop for r in old)}

