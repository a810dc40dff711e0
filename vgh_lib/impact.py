"""Value impact: predicting where along a pretraining trajectory RL pays off
(THEORY.md §4, the paper's Section 5, reconstructed).

For a checkpoint and a prompt distribution:

* **headroom** ``H = E_x[pass@K(x) − pass@1(x)]``: reward that re-weighting the policy's own
  samples can reach;
* **value-gradient signal** ``S = ‖∇_θ J‖``, the norm of the expected GRPO update, estimated
  without noise bias as ``sqrt(max(0, ⟨ĝ_A, ĝ_B⟩))`` from two independent batches;
* **reward-std signal** ``E_x sqrt(p(1 − p))``;
* **value impact** ``I = S·H`` and the predicted gain ``α·I`` (α fitted across checkpoints).

The criterion: RL is most effective at the checkpoints that maximise ``I``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vgh_lib import grpo, stats
from vgh_lib.grpo import pass_at_k


# ------------------------------------------------------------------------- factors
def headroom(successes, n_samples: int, k: int) -> float:
    """``E_x[pass@k − pass@1]`` from per-prompt success counts out of ``n_samples``."""
    c = np.asarray(successes, dtype=int)
    passk = np.mean([pass_at_k(n_samples, int(ci), k) for ci in c])
    return float(passk - np.mean(c / n_samples))


def reward_std_signal(successes, n_samples: int) -> float:
    """``E_x sqrt(p(1 − p))`` with ``p`` the per-prompt success rate."""
    p = np.asarray(successes, dtype=float) / n_samples
    return float(np.mean(np.sqrt(p * (1 - p))))


def unbiased_norm(g_a: torch.Tensor, g_b: torch.Tensor) -> float:
    """``sqrt(max(0, ⟨ĝ_A, ĝ_B⟩))``: for independent unbiased estimates, ``E⟨ĝ_A, ĝ_B⟩ = ‖g‖²``
    exactly, whereas ``E‖ĝ‖² = ‖g‖² + tr Var ĝ`` is biased upwards by the noise."""
    return float(np.sqrt(max(0.0, float(g_a.reshape(-1) @ g_b.reshape(-1)))))


def grpo_update(model, tokenizer, examples, group_size: int, temperature: float,
                generator: torch.Generator) -> torch.Tensor:
    """One batch's expected-update estimate at θ: ``mean_i A_i Σ_s ∇_θ log π(a_s^i)``,
    flattened over all parameters, with GRPO's group-normalised advantages."""
    device = next(model.parameters()).device
    prompts, answers = grpo.encode_prompts(tokenizer, examples, device)
    prompts = prompts.repeat_interleave(group_size, 0)
    answers = answers.repeat_interleave(group_size, 0)
    La = answers.shape[1]
    noise = grpo.gumbel_noise((prompts.shape[0], La, model.config.vocab_size), generator, device)
    comp = grpo.generate(model, prompts, La, temperature, noise)
    adv = grpo.group_advantages((comp == answers).all(1).float(), group_size)
    logp = grpo.completion_logprobs(model, prompts, comp, temperature)
    surrogate = (adv[:, None] * logp).sum(1).mean()
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(surrogate, params, allow_unused=True)
    return torch.cat([g.reshape(-1) if g is not None else torch.zeros(p.numel(), device=p.device)
                      for g, p in zip(grads, params, strict=True)]).detach()


def signal(model, tokenizer, train_examples, n_prompts: int, group_size: int,
           temperature: float, seed: int) -> float:
    """``S`` from two independent batches of ``n_prompts`` training prompts each."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train_examples), generator=gen)[: 2 * n_prompts].tolist()
    batch_a = [train_examples[i] for i in idx[:n_prompts]]
    batch_b = [train_examples[i] for i in idx[n_prompts:]]
    g_a = grpo_update(model, tokenizer, batch_a, group_size, temperature, gen)
    g_b = grpo_update(model, tokenizer, batch_b, group_size, temperature, gen)
    return unbiased_norm(g_a, g_b)


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


def pilot_checkpoints(pass1, targets=PILOT["pass1_targets"]) -> list[int]:
    """Indices of the checkpoints whose pass@1 is closest to each target (distinct, in order)."""
    pass1 = np.asarray(pass1, float)
    chosen: list[int] = []
    for t in targets:
        order = np.argsort(np.abs(pass1 - t), kind="stable")
        chosen.append(int(next(j for j in order if j not in chosen)))
    return sorted(chosen)


def choose_lr(largest_drops: dict[float, list[float]],
              tolerance: float = PILOT["collapse_tolerance"]) -> float:
    """The largest learning rate whose probe value never fell more than ``tolerance`` below its
    start at any pilot checkpoint; the smallest rate if none qualifies.

    ``largest_drops[lr]`` holds, per pilot checkpoint, ``GRPOHistory.largest_drop()``.
    """
    if not largest_drops:
        raise ValueError("no pilot runs to choose a learning rate from")
    safe = [lr for lr, drops in largest_drops.items() if max(drops) <= tolerance]
    return max(safe) if safe else min(largest_drops)


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


def steps_for_budget(seconds_per_step: float, n_runs: int, choices=PILOT["step_choices"],
                     budget_s: float = PILOT["grpo_budget_s"],
                     workers: int = PILOT["workers"]) -> int:
    """The largest number of GRPO steps whose predicted wall time fits the budget."""
    for steps in sorted(choices, reverse=True):
        if seconds_per_step * steps * n_runs / workers <= budget_s:
            return steps
    return min(choices)


# ------------------------------------------------------------------------ predictions
def fit_alpha(impact, gain) -> float:
    """Least squares through the origin: ``α = Σ I·gain / Σ I²``."""
    i, g = np.asarray(impact, float), np.asarray(gain, float)
    denom = float(i @ i)
    return float(i @ g / denom) if denom > 0 else float("nan")


def leave_one_out_error(impact, gain) -> float:
    """RMS error of predicting each checkpoint's gain with α fitted on the others."""
    i, g = np.asarray(impact, float), np.asarray(gain, float)
    errs = []
    for k in range(i.size):
        keep = np.arange(i.size) != k
        errs.append(fit_alpha(i[keep], g[keep]) * i[k] - g[k])
    return float(np.sqrt(np.nanmean(np.square(errs))))


@dataclass
class Correlation:
    name: str
    spearman: float
    spearman_ci: tuple[float, float]
    pearson: float
    pearson_ci: tuple[float, float]


def correlate(name: str, x, y, n_boot: int = 2000, seed: int = 0) -> Correlation:
    """Spearman and Pearson of ``x`` with ``y``, with percentile bootstrap intervals over the
    points (checkpoints); resamples where either input is constant are skipped."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rng = np.random.default_rng(seed)
    sp, pe = [], []
    for _ in range(n_boot):
        idx = rng.integers(0, x.size, x.size)
        s, p = stats.spearman(x[idx], y[idx]), stats.pearson(x[idx], y[idx])
        if not np.isnan(s):
            sp.append(s)
        if not np.isnan(p):
            pe.append(p)

    def ci(v):
        return (float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))) if v else (np.nan, np.nan)

    return Correlation(name, stats.spearman(x, y), ci(sp), stats.pearson(x, y), ci(pe))


def inverted_u_margin(gain_mean, gain_se, peak: int) -> float:
    """``min over e ∈ {first, last} of (gain[peak] − gain[e] − sqrt(se[peak]² + se[e]²))``:
    positive when the peak's gain exceeds both ends by more than their combined errors."""
    m, s = np.asarray(gain_mean, float), np.asarray(gain_se, float)
    return float(min(m[peak] - m[e] - np.hypot(s[peak], s[e]) for e in (0, m.size - 1)))


# ------------------------------------------------------------------- the experiment
@dataclass
class GainRun:
    step: int
    seed: int
    pass1_before: float
    pass1_after: float
    successes_before: np.ndarray  # per held-out prompt, out of eval_samples

    @property
    def gain(self) -> float:
        return self.pass1_after - self.pass1_before


def gain_job(job: dict) -> GainRun:
    """One GRPO run from one checkpoint with one seed (a picklable job for a process pool)."""
    torch.set_num_threads(1)
    from vgh_lib.pretrain import PretrainConfig

    cfg = PretrainConfig(**job["pretrain"])
    task = cfg.task_obj()
    train, held_out = task.split()
    gcfg = grpo.GRPOConfig(**job["grpo"], seed=job["seed"])
    run = grpo.rl_from_checkpoint(job["path"], train, held_out, gcfg, cfg.eval_samples,
                                  cfg.k, job["device"])
    return GainRun(job["step"], job["seed"], run.before.pass1, run.after.pass1,
                   run.before.successes)


def factor_job(job: dict) -> dict:
    """S and the costate fidelity ρ of one checkpoint (a picklable job for a process pool)."""
    torch.set_num_threads(1)
    from vgh_lib import theorem2
    from vgh_lib.models import load_local
    from vgh_lib.pretrain import PretrainConfig

    cfg = PretrainConfig(**job["pretrain"])
    task = cfg.task_obj()
    train, held_out = task.split()
    model, tok = load_local(job["path"], job["device"])
    s = signal(model, tok, train, job["signal_prompts"], job["group_size"], job["temperature"],
               job["seed"])
    prompts, answers = grpo.encode_prompts(tok, held_out[: job["fidelity_prompts"]], model.device)
    cell = theorem2.measure_cells(model, prompts, answers, job["fidelity_rollouts"],
                                  [job["temperature"]], [job["fidelity_tau_r"]], job["seed"],
                                  job["step"], n_boot=0)[0]
    resolved = cell.counted(0.9)
    return {"step": job["step"], "S": s, "rho": cell.cosine if resolved else float("nan"),
            "rho_resolved": resolved}
