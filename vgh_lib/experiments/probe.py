"""Notebook ``07_probe``: ``vgh probe`` (:mod:`vgh_lib.tools.probe`) on the confirmation
trajectories of notebook 05, against that notebook's full-budget factors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from vgh_lib.common.impact import CheckpointData
from vgh_lib.common.parallel import run_jobs
from vgh_lib.common.stats import spearman
from vgh_lib.errors import ParameterError
from vgh_lib.experiments.designs import PILOT_CHOSEN
from vgh_lib.experiments.pretraining_trajectory import PAPER_TRAJECTORY, SMOKE_TRAJECTORY, ConfirmationParams
from vgh_lib.harness.claims import ClaimSpec, Measured
from vgh_lib.harness.params import Workers, spec
from vgh_lib.tiny.jobs import run_factors
from vgh_lib.tools.probe import ProbeConfig, ProbeJob, ProbeResult, run_probe


@dataclass(frozen=True)
class ProbeBookParams(Workers, ConfirmationParams):
    """Parameters of ``07_probe``: ``vgh probe`` (vgh_lib.tools.probe) on the confirmation
    trajectories of ``05_value_impact``, against that notebook's full-budget factors.

    The trajectory and reference parameters default to notebook 05's, so both notebooks use
    the same cached trajectories and the reference factors are notebook 05's own; the
    ``probe_*`` parameters default to ``vgh probe``'s defaults (``ProbeConfig``).
    """

    # the run profiles: their overrides of the defaults below (the defaults are `default`)
    PROFILES: ClassVar[dict] = {"smoke": {**SMOKE_TRAJECTORY, "confirmation_seeds": (1,),
                                          "checkpoint_grid": (20, 40, 80, 150), "signal_batches": 3,
                                          "signal_prompts": 4, "factor_prompts": 8, "probe_batches": 3,
                                          "probe_prompts": 12, "probe_seeds": (0, 1), "jobs": 1},
                                "default": {},
                                "paper": {**PAPER_TRAJECTORY, "signal_prompts": 128,
                                          "checkpoint_grid": tuple(round(s * 20_000 / 3000) for s in
                                                                   PILOT_CHOSEN["checkpoint_grid"])}}

    probe_samples: int = spec(8, lo=2, hi=1024, help="probe: completions per prompt (--samples)")
    probe_k: int = spec(4, lo=1, hi=1024, help="probe: k of pass@k (--k)")
    probe_batches: int = spec(4, lo=3, hi=1000, help="probe: batches of S (--batches)")
    probe_prompts: int = spec(24, lo=3, hi=100_000, help="probe: prompts in all (--prompts)")
    probe_seeds: tuple[int, ...] = spec((0, 1, 2, 3, 4), lo=0, hi=2**31 - 1,
                                        help="probe seeds (--seed), to show its own scatter")

    def probe_config(self, seed: int) -> ProbeConfig:
        """``vgh probe``'s configuration with probe seed ``seed``."""
        return ProbeConfig(samples=self.probe_samples, k=self.probe_k, batches=self.probe_batches,
                           prompts=self.probe_prompts, temperature=self.temperature, seed=seed,
                           device=self.device)

    def probe_jobs(self, trajectories: dict[int, list]) -> list[tuple[tuple[int, int], ProbeJob]]:
        """``((trajectory seed, probe seed), job)`` for every probe seed and checkpoint, in that
        order (the checkpoints of a trajectory and seed stay in step order)."""
        return [((s, ps), ProbeJob(str(c.path), self.task, self.probe_config(ps), self.n_digits))
                for s, cps in trajectories.items() for ps in self.probe_seeds for c in cps]

    def check(self) -> None:
        super().check()
        if self.probe_k > self.probe_samples:
            raise ParameterError(f"parameter 'probe_k' = {self.probe_k} must be at most "
                                 f"'probe_samples' = {self.probe_samples}")
        if self.probe_prompts % self.probe_batches:
            raise ParameterError(f"parameter 'probe_prompts' = {self.probe_prompts} must be a "
                                 f"multiple of 'probe_batches' = {self.probe_batches}")
        if len(self.checkpoint_grid) < 3:
            raise ParameterError("parameter 'checkpoint_grid' needs at least 3 steps to rank")


FACTORS = ("I", "S", "H")
"""The factors whose rankings the notebook compares."""


def reference_factors(params: ProbeBookParams, trajectories: dict[int, list]
                      ) -> dict[tuple[int, int], dict[str, float]]:
    """Notebook 05's full-budget factors of every checkpoint, by (trajectory, step)."""
    factors = run_jobs(run_factors, params.factor_jobs(trajectories), params.jobs,
                       desc="reference factors")
    return {(f.trajectory, f.step): CheckpointData(f.step, f.gram, f.successes, f.n_samples, f.k,
                                                   np.zeros((1, 1))).predictors()
            for f in factors}


def run_probes(params: ProbeBookParams, trajectories: dict[int, list]
               ) -> dict[tuple[int, int], list[ProbeResult]]:
    """``vgh probe`` on every checkpoint with every probe seed, by (trajectory, probe seed),
    each list in step order."""
    keys, jobs = zip(*params.probe_jobs(trajectories))
    out: dict[tuple[int, int], list[ProbeResult]] = {}
    for key, r in zip(keys, run_jobs(run_probe, list(jobs), params.jobs, desc="vgh probe")):
        out.setdefault(key, []).append(r)
    return out


def probe_values(probes: dict[tuple[int, int], list[ProbeResult]], steps: dict[int, list[int]]
                 ) -> dict[tuple[int, int, str], np.ndarray]:
    """(trajectory, probe seed, factor) → the probe's values of that factor, in step order."""
    out = {}
    for (s, ps), res in probes.items():
        by_step = {r.step: r for r in res}
        for f in FACTORS:
            out[(s, ps, f)] = np.array([by_step[st].values[f] for st in steps[s]])
    return out


COMPARISON_HEADER = ["trajectory", "step", "pass@1 (ref)", "H (ref)", "S (ref)", "I (ref)",
                     "I (probe, mean ± sd)"]


def comparison_rows(params: ProbeBookParams, steps: dict[int, list[int]],
                    reference: dict[tuple[int, int], dict[str, float]],
                    values: dict[tuple[int, int, str], np.ndarray]) -> list[list[str]]:
    """One row per checkpoint: the reference factors beside the probe's I over its seeds
    (mean ± sample sd; the sd is 0 with one probe seed)."""
    rows = []
    for s in params.confirmation_seeds:
        probe_i = np.stack([values[(s, ps, "I")] for ps in params.probe_seeds])
        for j, st in enumerate(steps[s]):
            r = reference[(s, st)]
            sd = probe_i[:, j].std(ddof=1) if len(probe_i) > 1 else 0
            rows.append([str(s), str(st), f"{r['pass@1']:.3f}", f"{r['H']:.3f}", f"{r['S']:.3g}",
                         f"{r['I']:.3g}", f"{probe_i[:, j].mean():.3g} ± {sd:.2g}"])
    return rows


def rank_agreement(params: ProbeBookParams, values: dict[tuple[int, int, str], np.ndarray],
                   reference: dict[tuple[int, int], dict[str, float]], steps: dict[int, list[int]]
                   ) -> dict[str, np.ndarray]:
    """Per factor, the (trajectories, probe seeds) Spearman correlations of the probe's values
    with the reference over the checkpoints of a trajectory."""
    return {f: np.array([[spearman(values[(s, ps, f)], [reference[(s, st)][f] for st in steps[s]])
                          for ps in params.probe_seeds] for s in params.confirmation_seeds])
            for f in FACTORS}


def top_agreement(params: ProbeBookParams, values: dict[tuple[int, int, str], np.ndarray],
                  reference: dict[tuple[int, int], dict[str, float]], steps: dict[int, list[int]]
                  ) -> tuple[dict[int, int], dict[int, list[int]], float]:
    """The step the reference ranks first by I per trajectory, the step each probe seed ranks
    first, and the share of (trajectory, probe seed) pairs where the two agree."""
    top_ref = {s: max(steps[s], key=lambda st: reference[(s, st)]["I"]) for s in params.confirmation_seeds}
    top_probe = {s: [steps[s][int(np.argmax(values[(s, ps, "I")]))] for ps in params.probe_seeds]
                 for s in params.confirmation_seeds}
    agree = float(np.mean([t == top_ref[s] for s in params.confirmation_seeds for t in top_probe[s]]))
    return top_ref, top_probe, agree


# ------------------------------------------------------------------------------ the claims
RANK_AGREEMENT_MIN = 0.7   # mean Spearman of the probe's ranking by I with the reference's

CLAIMS = (
    ClaimSpec("s7.probe_ranks_like_reference",
              "vgh probe at its default budget ranks the checkpoints by I like the full-budget I of "
              "notebook 05: Spearman correlation, mean over probe seeds and trajectories",
              ">=", RANK_AGREEMENT_MIN, kind="empirical",
              fails_if="the cheap probe's ranking by I agrees weakly with the full-budget ranking "
                       "(mean Spearman below 0.7): its budget is too small to screen checkpoints"),
)


def claim_values(spear: dict[str, np.ndarray]) -> dict[str, Measured]:
    """What notebook 07 measured for each of :data:`CLAIMS` (``spear``: :func:`rank_agreement`)."""
    return {"s7.probe_ranks_like_reference": Measured(float(np.nanmean(spear["I"])))}


# ----------------------------------------------------------------------- the figures


def figure_ranking(params, steps, reference, probe_vals, spear):
    """Per trajectory: the reference I of every checkpoint and each probe seed's I, with its Spearman."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(params.confirmation_seeds), figsize=plots.figsize(5.5 * len(params.confirmation_seeds), 4.2),
                             squeeze=False)
    for t, s in enumerate(params.confirmation_seeds):
        ax = axes[0, t]
        x = np.array(steps[s])
        ax.plot(x, [reference[(s, st)]["I"] for st in steps[s]], "k-o", ms=4, lw=1.5,
                label="reference (notebook 05's budget)")
        for i, ps in enumerate(params.probe_seeds):
            ax.plot(x, probe_vals[(s, ps, "I")], "--", marker=".", lw=0.8, color=colors[i % 10],
                    label=f"vgh probe, seed {ps}: Spearman {spear['I'][t, i]:.2f}")
        ax.set_xscale("log")
        ax.set_xlabel("pretraining step")
        ax.set_ylabel("value impact I = S·H")
        ax.set_title(f"trajectory {s}", fontsize=9)
        ax.legend(fontsize=9)
    fig.suptitle(f"07_probe, profile {params.profile}: probe {params.probe_prompts} prompts × "
                 f"{params.probe_samples} samples, {params.probe_batches} batches, k={params.probe_k}; "
                 f"reference {params.signal_batches}×{params.signal_prompts} prompts (S), "
                 f"{params.factor_prompts}×{params.eval_samples} (H, k={params.k})", fontsize=9)
    return fig
