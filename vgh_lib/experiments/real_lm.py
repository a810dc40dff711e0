"""Notebook ``06_real_lm``: Theorem 2 in a real pretrained language model, SmolLM2-135M-Instruct
(book/theory.md §3 and §4b): its parameters, the pre-registered thresholds of its claims, and the
values its claims and glued numbers are computed from.

The measurements are :mod:`vgh_lib.lm.costates`; the notebook reaches them (and
:mod:`vgh_lib.lm.loading`, :mod:`vgh_lib.lm.tasks`) only through the thin functions here:
:func:`load`, :func:`screen`, :func:`pick`, :func:`analyse`. The rest turns the per-prompt
results (:class:`vgh_lib.lm.costates.PromptResult`) into the claims' values: the Bonferroni
critical values (:func:`t_crit`, :func:`z_crit`, :func:`z2_crit`), the Monte Carlo z of the
sampler (:func:`mc_z`), :func:`worst`, :func:`fidelity_summary`, :func:`relaxed_summary` and
:func:`attention_shares`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from vgh_lib.common import stats
from vgh_lib.common.stats import spearman
from vgh_lib.errors import ParameterError
from vgh_lib.harness.claims import ClaimSpec, Measured
from vgh_lib.harness.params import NotebookParams, OnDevice, RealModel, spec
from vgh_lib.lm import costates as lm_costates
from vgh_lib.lm import loading as lm_loading
from vgh_lib.lm import tasks as lm_tasks
from vgh_lib.lm.tasks import LM_TASKS


@dataclass(frozen=True)
class RealLMParams(RealModel, OnDevice, NotebookParams):
    """Parameters of ``06_real_lm`` (book/theory.md §3 and §4b on SmolLM2-135M)."""

    # the run profiles: their overrides of the defaults below (the defaults are `default`)
    PROFILES: ClassVar[dict] = {"smoke": {"model_path": "tiny", "target": "greedy", "per_task": 2,
                                          "n_prompts": 2, "value_lo": 0.0, "value_hi": 1.0,
                                          "n_rollouts": 64, "group_size": 8, "group_sizes": (2, 4, 8),
                                          "temperatures": (1.0,), "relax_temperatures": (0.3, 1.0),
                                          "relax_rollouts": 32},
                                "default": {},
                                "paper": {"per_task": 40, "n_prompts": 12, "n_rollouts": 8192,
                                          "group_sizes": (2, 4, 8, 16, 32, 64, 128, 256),
                                          "temperatures": (0.25, 0.5, 1.0, 2.0),
                                          "relax_rollouts": 4096, "relax_blocks": 8, "device": "auto"}}

    per_task: int = spec(8, lo=1, hi=400, help="held-out prompts per task in the capability screen")
    n_prompts: int = spec(4, lo=1, hi=64, help="prompts for the Theorem 2 measurements")
    value_lo: float = spec(0.1, lo=0.0, hi=1.0, help="a Theorem 2 prompt has V^D ≥ value_lo")
    value_hi: float = spec(0.9, lo=0.0, hi=1.0, help="a Theorem 2 prompt has V^D ≤ value_hi")
    n_rollouts: int = spec(512, lo=16, hi=1_000_000, help="rollouts per prompt for λ^D (τ = 1)")
    group_size: int = spec(16, lo=2, hi=4096, help="GRPO group size G of the identity test")
    group_sizes: tuple[int, ...] = spec((2, 4, 8, 16, 32, 64), lo=2, hi=65536,
                                        help="group sizes G of the one-batch fidelity curve")
    temperatures: tuple[float, ...] = spec((0.5, 1.0, 2.0), lo=0.05, hi=10.0, help="policy temperatures τ")
    relax_temperatures: tuple[float, ...] = spec((0.1, 0.3, 1.0), lo=0.01, hi=10.0,
                                                 help="relaxation temperatures τ_r")
    relax_rollouts: int = spec(128, lo=8, hi=1_000_000, help="relaxed rollouts per prompt and cell")
    relax_blocks: int = spec(4, lo=3, hi=64, help="independent blocks of the relaxed rollouts (folds)")

    def check(self) -> None:
        if self.value_lo > self.value_hi:
            raise ParameterError(f"parameter 'value_lo' = {self.value_lo} must be at most "
                                 f"'value_hi' = {self.value_hi}")
        if self.n_rollouts < 3 * self.group_size:
            raise ParameterError(f"parameter 'n_rollouts' = {self.n_rollouts} must be at least "
                                 f"3 × group_size = {3 * self.group_size}")
        if self.relax_rollouts % self.relax_blocks:
            raise ParameterError(f"parameter 'relax_rollouts' = {self.relax_rollouts} must be a "
                                 f"multiple of 'relax_blocks' = {self.relax_blocks}")


# Pre-registered before the default run (see the chapter): the family-wise error rate of the
# identity tests, and the thresholds of the empirical claims.
ALPHA = 0.01
SPREAD = 0.3          # pass@1 of the easiest task minus that of the hardest
RHO_HARD = 0.9        # noise-corrected cos(E λ^C, ∇V^D) at τ = 1 and the smallest τ_r
RHO_SPEARMAN = 0.5    # Spearman(sampling gap, 1 − ρ) within a prompt, averaged (first specification)
# The second specification (issue 21), committed before the first run that showed its values:
# Spearman(sampling gap, r) within each prompt, averaged, against its permutation null.
GAP_R_ALPHA = 0.05
SHARE = 0.5           # attention-only share of ‖∇V^D‖²
FID_LARGEST = 0.9     # one-batch fidelity at the largest G

TASKS = LM_TASKS      # the task suite, in suite order (vgh_lib.lm.tasks.LM_TASKS)
CAPITALS_PROMPT = "The capital of France is"


# ------------------------------------------------------------------ the model and the screen
def load(params: RealLMParams):
    """``(model, tokenizer, model_dir)``: :func:`vgh_lib.lm.loading.load_model` of
    ``params.model_path`` on ``params.device`` (float32, eval mode; a GGUF is converted once
    into the cache), with every parameter's ``requires_grad`` off (the measurements take
    gradients at the input embeddings only)."""
    model, tokenizer, model_dir = lm_loading.load_model(params.model_path, params.device)
    model.requires_grad_(False)
    return model, tokenizer, model_dir


def n_parameters(model) -> int:
    """The number of the model's parameters."""
    return sum(p.numel() for p in model.parameters())


def screen(model, tokenizer, params: RealLMParams) -> list[lm_costates.Screened]:
    """The capability screen: :func:`vgh_lib.lm.costates.screen` (exact ``V^D`` at τ = 1 of the
    ``params.target`` answer) of the first ``params.per_task`` held-out prompts of every task
    (:func:`vgh_lib.lm.tasks.suite`)."""
    examples = lm_tasks.suite("held_out", params.per_task)
    return lm_costates.screen(model, tokenizer, examples, params.target)


def task_means(screened) -> dict[str, float]:
    """Mean exact pass@1 ``V^D`` of each task's screened prompts, in suite order (``TASKS``)."""
    return {task: float(np.mean([s.value for s in screened if s.example.task == task]))
            for task in TASKS}


def task_table(screened, means: dict[str, float]) -> str:
    """The screen's markdown table: per task, the prompts, the mean ``V^D`` (``means``, from
    :func:`task_means`), the mean probability of the first answer token and the distinct
    answer lengths in tokens."""
    rows = ["| task | prompts | mean V^D (exact pass@1) | mean π(first answer token) | answer tokens |",
            "|---|---|---|---|---|"]
    for task in TASKS:
        sel = [s for s in screened if s.example.task == task]
        lens = sorted({int(s.answer.shape[0]) for s in sel})
        rows.append(f"| {task} | {len(sel)} | {means[task]:.3f} | "
                    f"{np.mean([s.first_token for s in sel]):.3f} | {', '.join(map(str, lens))} |")
    return "\n".join(rows)


def spread(means: dict[str, float]) -> float:
    """The value of claim ``real.suite.spread``: the largest task mean minus the smallest."""
    return max(means.values()) - min(means.values())


def capitals_probabilities(model, tokenizer) -> tuple[float, float]:
    """``(P(' Paris'), P(' London'))``: the next-token probabilities (τ = 1) of the first token
    of each word after ``CAPITALS_PROMPT``."""
    ids = tokenizer(CAPITALS_PROMPT, return_tensors="pt").input_ids.to(model.device)
    with torch.no_grad():
        probs = model(ids).logits[0, -1].float().softmax(-1)
    p_paris, p_london = (float(probs[tokenizer(w, add_special_tokens=False).input_ids[0]])
                         for w in (" Paris", " London"))
    return p_paris, p_london


def capitals_log10_ratio(p_paris: float, p_london: float) -> float:
    """The value of claim ``real.capitals.paris_vs_london``: log10 P(' Paris') − log10 P(' London')."""
    return math.log10(p_paris / p_london)


# --------------------------------------------------------------- the Theorem 2 measurements
def pick(screened, params: RealLMParams) -> list[lm_costates.Screened]:
    """The pre-registered selection rule (:func:`vgh_lib.lm.costates.pick_prompts`): up to
    ``params.n_prompts`` prompts with ``V^D`` in ``[value_lo, value_hi]``. Raises RuntimeError
    when none qualifies."""
    picked = lm_costates.pick_prompts(screened, params.n_prompts, params.value_lo, params.value_hi)
    if not picked:
        raise RuntimeError(f"no held-out prompt has V^D in [{params.value_lo}, {params.value_hi}]; "
                           "widen the band (value_lo, value_hi) or raise per_task")
    return picked


def analyse(model, picked, params: RealLMParams) -> list[lm_costates.PromptResult]:
    """:func:`vgh_lib.lm.costates.analyse_prompt` of each picked prompt with the parameters'
    rollouts, group sizes and temperatures; prompt ``i`` is seeded ``params.seed * 1000 + i``."""
    return [lm_costates.analyse_prompt(
        model, s, params.n_rollouts, params.group_size, params.group_sizes, params.temperatures,
        params.relax_temperatures, params.relax_rollouts, params.relax_blocks, params.seed * 1000 + i)
        for i, s in enumerate(picked)]


# ------------------------------------------------------------------------- the identity tests
def n_groups(params: RealLMParams) -> int:
    """K: the independent GRPO groups of each prompt's identity rollouts."""
    return params.n_rollouts // params.group_size


def t_crit(n_prompts: int, n_groups: int, alpha: float = ALPHA) -> float:
    """Two-sided critical |t| (K − 1 degrees of freedom) of ``t∥``, Bonferroni over the prompts."""
    from scipy.stats import t

    return float(t.ppf(1 - alpha / (2 * n_prompts), n_groups - 1))


def z_crit(n_prompts: int, alpha: float = ALPHA) -> float:
    """One-sided critical z of ``z_bias``, Bonferroni over the prompts."""
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / n_prompts))


def z2_crit(n_prompts: int, alpha: float = ALPHA) -> float:
    """Two-sided critical |z| of the Monte Carlo success rate, Bonferroni over the prompts."""
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / (2 * n_prompts)))


def mc_z(success_rate: float, value: float, n_rollouts: int) -> float:
    """z of a Monte Carlo success rate of ``n_rollouts`` draws against the exact ``value``
    (binomial standard error ``sqrt(V(1 − V)/n)``, its variance floored at 1e-12)."""
    return (success_rate - value) / math.sqrt(max(value * (1 - value), 1e-12) / n_rollouts)


def mc_zs(results, n_rollouts: int) -> list[float]:
    """:func:`mc_z` of each prompt's identity rollouts."""
    return [mc_z(r.success_rate, r.value, n_rollouts) for r in results]


def identity_table(results, zs) -> str:
    """The identity tests' markdown table, one row per prompt (``zs`` from :func:`mc_zs`)."""
    rows = ["| task | V^D | MC success rate (z) | t∥ | z_bias | relative bias | cosine | cosine predicted by noise |",
            "|---|---|---|---|---|---|---|---|"]
    for r, z in zip(results, zs):
        it = r.identity
        rows.append(f"| {r.task} | {r.value:.3f} | {r.success_rate:.3f} ({z:+.2f}) | {it.t_parallel:+.2f} | "
                    f"{it.bias_z:+.2f} | {it.rel_bias:.3f} | {it.cosine:.4f} | {it.predicted_cosine:.4f} |")
    return "\n".join(rows)


def min_cosine(results) -> float:
    """The smallest cosine of a prompt's pooled λ^D with ∇V^D."""
    return min(r.identity.cosine for r in results)


def worst(values) -> float:
    """The largest value, or NaN (which fails a claim) if any value is NaN."""
    return float("nan") if any(math.isnan(v) for v in values) else max(values)


def worst_abs_mc_z(zs) -> float:
    """The value of claim ``real.value.mc_z``: :func:`worst` of the |z| of :func:`mc_zs`."""
    return worst([abs(z) for z in zs])


def worst_abs_t_parallel(results) -> float:
    """The value of claim ``real.identity.t_parallel``: :func:`worst` of the prompts' |t∥|."""
    return worst([abs(r.identity.t_parallel) for r in results])


def worst_bias_z(results) -> float:
    """The value of claim ``real.identity.bias_z``: :func:`worst` of the prompts' ``z_bias``
    (one-sided: a negative z is no evidence of bias)."""
    return worst([r.identity.bias_z for r in results])


# ------------------------------------------------------------------ one GRPO batch's fidelity
@dataclass
class FidelitySummary:
    group_sizes: list        # the group sizes G of the curve, ascending
    curves: list             # per prompt: mean one-batch cosine at each G
    spearman: list           # per prompt: Spearman(G, cosine) (NaN with fewer than 3 sizes)
    spearman_mean: float     # their mean, NaNs left out (reported, not a claim)
    largest: float           # mean cosine at the largest G, mean over prompts (the claim)
    zero_share_smallest: float  # share of all-equal groups at the smallest G, mean over prompts
    g16: float               # mean cosine at G = 16, mean over prompts (NaN if 16 is not a size)


def fidelity_summary(results) -> FidelitySummary:
    """The one-batch fidelity curve of each prompt (``PromptResult.fidelity``) and its summaries."""
    Gs = sorted(next(iter(results)).fidelity)
    curves, rho = [], []
    for r in results:
        ys = [r.fidelity[G][0] for G in Gs]
        curves.append(ys)
        rho.append(spearman(Gs, ys) if len(Gs) >= 3 else float("nan"))
    return FidelitySummary(
        group_sizes=Gs, curves=curves, spearman=rho,
        spearman_mean=float(np.nanmean(rho)) if rho else float("nan"),
        largest=float(np.mean([r.fidelity[Gs[-1]][0] for r in results])),
        zero_share_smallest=float(np.mean([r.fidelity[Gs[0]][1] for r in results])),
        g16=float(np.mean([r.fidelity[16][0] for r in results])) if 16 in Gs else float("nan"))


# ------------------------------------------------------------------------ relaxed costates
def relaxed_table(results) -> str:
    """The relaxed cells' markdown table, one row per prompt, τ and τ_r."""
    rows = ["| task | τ | τ_r | V^D(τ) | ρ ± se | raw | r ± se | gap | entropy | R̃ |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for c in r.relaxed:
            rows.append(f"| {r.task} | {c['tau']:g} | {c['tau_r']:g} | {c['value']:.3f} | {c['rho']:.3f} ± {c['se']:.3f} | "
                        f"{c['raw']:.3f} | {c['r']:.3f} ± {c['r_se']:.3f} | {c['gap']:.3f} | {c['entropy']:.2f} | "
                        f"{c['reward']:.3f} |")
    return "\n".join(rows)


@dataclass
class RelaxedSummary:
    tau: float               # the policy temperature of claim real.relaxed.rho_hard
    hard_tau_r: float        # its relaxation temperature: the smallest τ_r
    rho_hard: float          # mean ρ over prompts at (tau, hard_tau_r), NaNs left out (the claim)
    gap_spearman: list       # per prompt with ≥ 3 resolved cells: Spearman(gap, 1 − ρ)
    gap_spearman_mean: float  # their mean (the claim); NaN if no prompt has 3 cells
    min_raw: float           # the range of the raw cosines over every cell
    max_raw: float


def relaxed_tau(temperatures) -> float:
    """τ of claim ``real.relaxed.rho_hard``: 1 if it is a policy temperature, else the middle one."""
    return 1.0 if 1.0 in temperatures else temperatures[len(temperatures) // 2]


def rho_hard(results, tau: float, tau_r: float) -> float:
    """Mean over prompts (NaNs left out) of the noise-corrected ρ of the cell (τ, τ_r)."""
    return float(np.nanmean([c["rho"] for r in results for c in r.relaxed
                             if c["tau"] == tau and c["tau_r"] == tau_r]))


def gap_error_spearman(results) -> list[float]:
    """Per prompt with at least 3 cells whose ρ is not NaN: Spearman(sampling gap, 1 − ρ) over
    those cells."""
    out = []
    for r in results:
        ok = [c for c in r.relaxed if not math.isnan(c["rho"])]
        if len(ok) >= 3:
            out.append(spearman([c["gap"] for c in ok], [1 - c["rho"] for c in ok]))
    return out


def relaxed_summary(results, temperatures, relax_temperatures) -> RelaxedSummary:
    """The relaxed cells' summaries that notebook 06 glues and claims."""
    tau = relaxed_tau(temperatures)
    hard = min(relax_temperatures)
    gap_rho = gap_error_spearman(results)
    raw_all = [c["raw"] for r in results for c in r.relaxed]
    return RelaxedSummary(tau=tau, hard_tau_r=hard, rho_hard=rho_hard(results, tau, hard),
                          gap_spearman=gap_rho,
                          gap_spearman_mean=float(np.mean(gap_rho)) if gap_rho else float("nan"),
                          min_raw=min(raw_all), max_raw=max(raw_all))


def gap_r_cells(results) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per prompt with at least 3 cells whose ``r`` is measured: the cells' sampling gaps and
    noise-corrected relative errors ``r`` of ``E λ^C`` against the exact ``∇V^D``."""
    xs, ys = [], []
    for r in results:
        ok = [c for c in r.relaxed if np.isfinite(c.get("r", float("nan")))]
        if len(ok) >= 3:
            xs.append(np.array([c["gap"] for c in ok]))
            ys.append(np.array([c["r"] for c in ok]))
    return xs, ys


def gap_r_test(results, n_perm: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """The claim of the second specification: the mean over prompts of Spearman(gap, r) and its
    one-sided permutation p (gaps fixed, errors permuted within each prompt;
    :func:`vgh_lib.common.stats.permutation_pvalue`). NaN without a prompt of 3 cells."""
    xs, ys = gap_r_cells(results)
    if not xs:
        return float("nan"), float("nan")
    return stats.permutation_pvalue(xs, ys, n_perm, seed)


def pooled_spearman_power(sizes, rho: float, n_sims: int = 2000, seed: int = 0,
                          alpha: float = GAP_R_ALPHA) -> tuple[float, float]:
    """``(critical value, power)`` of the pooled test of :func:`gap_r_test` with prompts of
    ``sizes`` cells: the critical mean Spearman from ``n_sims`` draws of the permutation null,
    and the share of ``n_sims`` designs whose mean Spearman reaches it when gap and error are
    bivariate normal with correlation ``rho`` within every prompt."""
    rng = np.random.default_rng(seed)

    def mean_rho(corr):
        total = np.zeros(n_sims)
        for n in sizes:
            x = rng.standard_normal((n_sims, n))
            y = corr * x + np.sqrt(1 - corr ** 2) * rng.standard_normal((n_sims, n))
            total += stats.spearman_rows(x, y)
        return total / len(sizes)

    crit = float(np.quantile(mean_rho(0.0), 1 - alpha))
    return crit, float(np.mean(mean_rho(rho) >= crit))


# ------------------------------------------------------------------- the attention-only share
def attention_shares(results) -> tuple[list[float], float]:
    """``(shares, mean)``: each prompt's attention-only share of ‖∇V^D‖² and their mean (the
    value of claim ``real.attention_share``)."""
    shares = [r.attention_share for r in results]
    return shares, float(np.mean(shares))


# ------------------------------------------------------------------------------ the claims
def claims(n_prompts: int, n_groups: int) -> tuple[ClaimSpec, ...]:
    """Notebook 06's claims. The identity tests' thresholds are Bonferroni-corrected critical
    values at family-wise rate :data:`ALPHA` over the ``n_prompts`` prompts (:func:`t_crit`,
    :func:`z_crit`, :func:`z2_crit`); the others are the constants above."""
    return (
        ClaimSpec("real.capitals.paris_vs_london",
                  "log10 P(' Paris') − log10 P(' London') after 'The capital of France is'", ">", 0.0,
                  kind="empirical",
                  fails_if="the model puts at least as much probability on ' London' as on ' Paris'"),
        ClaimSpec("real.suite.spread",
                  "exact pass@1 of the easiest task minus that of the hardest (held-out screen, τ = 1)",
                  ">=", SPREAD, kind="empirical",
                  fails_if="the tasks are not of graded difficulty (all pass@1 within 0.3)"),
        ClaimSpec("real.value.mc_z",
                  "max over prompts of |z| of the KV-cached Monte Carlo success rate against the "
                  "teacher-forced V^D", "<=", z2_crit(n_prompts),
                  fails_if="the sampler or the teacher-forced value is wrong: success rate and V^D "
                           "differ beyond sampling error"),
        ClaimSpec("real.identity.t_parallel",
                  "max over prompts of |t| of the group costates along ∇V^D (E[λ^D] = ∇V^D in scale)",
                  "<=", t_crit(n_prompts, n_groups),
                  fails_if="the mean empirical costate has the wrong scale along ∇V^D beyond Monte "
                           "Carlo error"),
        ClaimSpec("real.identity.bias_z",
                  "max over prompts of the z statistic of the U-statistic estimate of ‖E[λ^D] − ∇V^D‖²",
                  "<=", z_crit(n_prompts),
                  fails_if="the mean empirical costate differs from the exact ∇V^D in some direction "
                           "beyond Monte Carlo error"),
        ClaimSpec("real.relaxed.gap_r.p",
                  "one-sided permutation p of Spearman(sampling gap, r) within each prompt, averaged over "
                  "prompts (r: noise-corrected relative error of E[λ^C] against ∇V^D)", "<=", GAP_R_ALPHA,
                  kind="empirical",
                  fails_if="the relaxed costate's relative error does not grow with the sampling gap "
                           "beyond what permuting the cells gives"),
        ClaimSpec("real.attention_share",
                  "share of ‖∇V^D‖² at prompt positions before the last (reached only through "
                  "attention), mean over prompts", ">=", SHARE, kind="empirical",
                  fails_if="most of the value gradient sits at the last prompt position, not behind attention"),
        ClaimSpec("real.fidelity.largest_G",
                  "mean cosine of one GRPO batch's λ^D with ∇V^D at the largest G, mean over prompts",
                  ">=", FID_LARGEST, kind="empirical",
                  fails_if="even the largest GRPO batch is a poor estimate of the value gradient (cosine < 0.9)"),
    )


def claim_values(*, p_paris: float, p_london: float, task_means: dict[str, float], mc_z, results,
                 gap_p: float, share_mean: float, fidelity) -> dict[str, Measured]:
    """What notebook 06 measured for each of :func:`claims`."""
    return {"real.capitals.paris_vs_london": Measured(capitals_log10_ratio(p_paris, p_london)),
            "real.suite.spread": Measured(spread(task_means)),
            "real.value.mc_z": Measured(worst_abs_mc_z(mc_z)),
            "real.identity.t_parallel": Measured(worst_abs_t_parallel(results)),
            "real.identity.bias_z": Measured(worst_bias_z(results)),
            "real.relaxed.gap_r.p": Measured(gap_p),
            "real.attention_share": Measured(share_mean),
            "real.fidelity.largest_G": Measured(fidelity.largest)}


def finding(results, n_prompts: int, n_groups: int) -> str:
    """The landing page's one line for this run."""
    return (f"E[λ^D] = ∇V^D in SmolLM2: worst |t| along ∇V^D {worst_abs_t_parallel(results):.2f} "
            f"(limit {t_crit(n_prompts, n_groups):.2f}); worst bias z {worst_bias_z(results):.2f} "
            f"(limit {z_crit(n_prompts):.2f})")


# ----------------------------------------------------------------------- the figures


def figure_tasks(screened, task_means, params):
    """Each screened prompt's exact pass@1 per task (dots) and the task's mean (bar); shaded: the
    value range the study keeps."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots
    import textwrap

    fig, ax = plt.subplots(figsize=plots.figsize(7, 3.2))
    order = sorted(task_means, key=task_means.get, reverse=True)
    for i, task in enumerate(order):
        vals = [s.value for s in screened if s.example.task == task]
        ax.scatter(np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)), vals, s=12, alpha=0.6)
        ax.plot([i - 0.3, i + 0.3], [task_means[task]] * 2, "k-", lw=2)
    # horizontal labels, wrapped: rotated ones need more room and their boxes collide
    names = [textwrap.fill(t.replace("_", " "), 10, break_long_words=False) for t in order]  # whole words
    ax.set_xticks(range(len(order)), names)
    ax.set_ylabel("exact pass@1 $V^D$ (τ = 1)")
    ax.set_ylim(-0.02, 1.02)
    ax.axhspan(params.value_lo, params.value_hi, color="0.9", zorder=-1)
    ax.grid(alpha=0.3)
    return fig


def figure_fidelity(results, fid):
    """One GRPO batch's mean cosine with the value gradient against the group size G, per prompt."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    Gs = fid.group_sizes
    fig, ax = plt.subplots(figsize=plots.figsize(6, 3.6))
    for r, ys in zip(results, fid.curves):
        ax.semilogx(Gs, ys, "o-", ms=4, label=f"{r.task} ($V^D$={r.value:.2f})")
    ax.set_xticks(Gs, [str(G) for G in Gs])
    ax.minorticks_off()
    ax.set_xlabel("group size G")
    ax.set_ylabel("mean cos(one batch's $\\lambda^D$, $\\nabla V^D$)")
    ax.set_ylim(-0.05, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    return fig


def figure_relaxed(results, params):
    """Left: the relaxed costate's noise-corrected agreement against τ per τ_r; right: its relative
    error r against the sampling gap."""
    import matplotlib.pyplot as plt

    from vgh_lib.common import plots

    fig, axes = plt.subplots(1, 2, figsize=plots.figsize(11, 4))
    for r in results:
        for tr in params.relax_temperatures:
            sel = [c for c in r.relaxed if c["tau_r"] == tr]
            axes[0].errorbar([c["tau"] for c in sel], [c["rho"] for c in sel], yerr=[2 * c["se"] for c in sel],
                             fmt="o-", ms=3, lw=1, capsize=2, label=f"{r.task}, $\\tau_r$={tr:g}")
            axes[0].set_xscale("log")
        ok = [c for c in r.relaxed if np.isfinite(c["r"])]
        axes[1].errorbar([c["gap"] for c in ok], [c["r"] for c in ok], yerr=[2 * c["r_se"] for c in ok],
                         fmt="o", ms=3, lw=0.8, capsize=2, label=r.task)
    axes[0].set_xlabel("policy temperature τ")
    axes[0].set_ylabel("noise-corrected cos($E\\lambda^C$, $\\nabla V^D$) ± 2 SE")
    axes[0].legend(fontsize=9, ncol=2)
    axes[0].grid(alpha=0.3)
    axes[1].set_xscale("symlog", linthresh=0.01)
    axes[1].set_xlabel("sampling gap $E\\sum_s\\|E[a_s]-y_s^\\top E\\|$")
    axes[1].set_ylabel("relative error $r$ (± 2 SE)")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].legend(fontsize=9)
    axes[1].grid(alpha=0.3)
    return fig
