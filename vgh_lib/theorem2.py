"""The Theorem 2 experiment (THEORY.md §3, reconstructed): empirical costates through
attention against relaxed-rollout costates, across a grid of checkpoints × policy
temperature τ × relaxation temperature τ_r.

For every cell: the mean λ^D and the mean λ^C at the prompt embeddings (per prompt, then
concatenated), their cosine with a bootstrap interval over rollouts, the half-split
resolution of each, the sampling gaps and the entropy. A cell *counts* when both means are
resolved (half-split cosine ≥ ``resolution``). The costate error is ``1 − cosine``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vgh_lib import costates as cs
from vgh_lib import grpo, stats
from vgh_lib.models import load_local


@dataclass
class Cell:
    step: int
    pass1: float
    tau: float
    tau_r: float
    cosine: float
    cosine_ci: tuple[float, float]
    rel_error: float          # ‖m̂_D − m̂_C‖ for unit-normalised means = sqrt(2(1 − cos))
    resolution_d: float       # cosine between the λ^D means of two halves of the rollouts
    resolution_c: float
    gap: float                # E Σ_s ‖E[a_s] − y_sᵀE‖
    mean_gap: float           # E Σ_s ‖E[a_s] − π_sᵀE‖
    entropy: float            # E Σ_s H(π_s)
    reward: float             # mean exact-match reward of the discrete rollouts
    position_cosines: list[float] = field(default_factory=list)  # per generated input position
    layer_cosines: dict[str, float] = field(default_factory=dict)

    @property
    def error(self) -> float:
        return 1.0 - self.cosine

    def counted(self, resolution: float) -> bool:
        return self.resolution_d >= resolution and self.resolution_c >= resolution


def _per_prompt_means(x: torch.Tensor, n: int, idx: torch.Tensor | None = None) -> torch.Tensor:
    """Concatenate the per-prompt means of per-rollout costates ``x`` (P·n, …) into one vector."""
    blocks = x.view(-1, n, *x.shape[1:])  # (P, n, …)
    if idx is not None:
        blocks = blocks[:, idx]
    return blocks.mean(1).reshape(-1)


def _bootstrap_cosine(a: torch.Tensor, b: torch.Tensor, n: int, n_boot: int,
                      gen: torch.Generator) -> tuple[float, float]:
    """Percentile interval of the cosine of per-prompt means, resampling rollouts in each prompt.

    Resample ``r`` draws ``idx[r, p]`` (n indices with replacement) for every prompt ``p``.
    Vectorised: the draws become counts, and the resampled means of all resamples are one
    matrix product per prompt.
    """
    P = a.shape[0] // n
    A, B = a.reshape(P, n, -1), b.reshape(P, n, -1)
    idx = torch.randint(n, (n_boot, P, n), generator=gen).to(a.device)
    counts = torch.zeros(n_boot, P, n, dtype=a.dtype, device=a.device).scatter_add_(
        2, idx, torch.ones(idx.shape, dtype=a.dtype, device=a.device)) / n
    ma = torch.einsum("rpn,pnd->rpd", counts, A).reshape(n_boot, -1)  # (R, P·d)
    mb = torch.einsum("rpn,pnd->rpd", counts, B).reshape(n_boot, -1)
    cos = (ma * mb).sum(1) / (ma.norm(dim=1) * mb.norm(dim=1))
    lo, hi = np.quantile(cos.cpu().numpy(), [0.025, 0.975])
    return float(lo), float(hi)


def measure_cells(model, prompts, answers, n_rollouts: int, temperatures, relax_temperatures,
                  seed: int, step: int = 0, pass1: float = float("nan"),
                  n_boot: int = 100) -> list[Cell]:
    """All (τ, τ_r) cells of one model. The discrete rollouts are shared across τ_r."""
    cells = []
    Lp = prompts.shape[1]
    n = n_rollouts
    half = torch.arange(n) < n // 2
    for ti, tau in enumerate(temperatures):
        gen = torch.Generator().manual_seed(seed * 7919 + step * 31 + ti)
        d = cs.discrete_rollouts(model, prompts, answers, n, tau, gen)
        lam_d = d.costates["embed"][:, :Lp]
        m_d = _per_prompt_means(lam_d, n)
        res_d = stats.cosine(_per_prompt_means(lam_d, n, half), _per_prompt_means(lam_d, n, ~half))
        for tau_r in relax_temperatures:
            c = cs.relaxed_rollouts(model, d, answers, tau, tau_r)
            lam_c = c.costates["embed"]
            m_c = _per_prompt_means(lam_c, n)
            cos = stats.cosine(m_d, m_c)
            positions = [stats.cosine(_per_prompt_means(d.costates["embed"][:, Lp + s], n),
                                      _per_prompt_means(c.gen_costates[:, s], n))
                         for s in range(c.gen_costates.shape[1])]
            layers = {name: stats.cosine(_per_prompt_means(d.costates[name][:, :Lp], n),
                                         _per_prompt_means(c.costates[name], n))
                      for name in c.costates}
            cells.append(Cell(
                step=step, pass1=pass1, tau=float(tau), tau_r=float(tau_r), cosine=cos,
                cosine_ci=(_bootstrap_cosine(lam_d, lam_c, n, n_boot, gen) if n_boot
                           else (float("nan"), float("nan"))),
                rel_error=float(np.sqrt(max(0.0, 2 * (1 - cos)))),
                resolution_d=res_d,
                resolution_c=stats.cosine(_per_prompt_means(lam_c, n, half),
                                          _per_prompt_means(lam_c, n, ~half)),
                gap=float(c.gap.sum(1).mean()), mean_gap=float(d.mean_gap.sum(1).mean()),
                entropy=float(d.entropy.sum(1).mean()), reward=float(d.rewards.mean()),
                position_cosines=positions, layer_cosines=layers))
    return cells


def grid_job(job: dict) -> list[Cell]:
    """All cells of one checkpoint (a picklable job for :func:`vgh_lib.parallel.run_jobs`)."""
    torch.set_num_threads(job.get("threads", 1))
    model, tok = load_local(job["path"], job["device"])
    prompts, answers = grpo.encode_prompts(tok, job["prompts"], model.device)
    return measure_cells(model, prompts, answers, job["n_rollouts"], job["temperatures"],
                         job["relax_temperatures"], job["seed"], job["step"], job["pass1"])


def run_grid(checkpoints, task, n_prompts: int, n_rollouts: int, temperatures,
             relax_temperatures, seed: int, device: str = "cpu", jobs: int = 1,
             progress: bool = True) -> list[Cell]:
    """Every cell of checkpoints × τ × τ_r on the first ``n_prompts`` held-out prompts,
    ``jobs`` checkpoints at a time."""
    from vgh_lib.parallel import run_jobs

    _, held_out = task.split()
    work = [{"path": str(ck.path), "device": device, "prompts": held_out[:n_prompts],
             "n_rollouts": n_rollouts, "temperatures": list(temperatures),
             "relax_temperatures": list(relax_temperatures), "seed": seed, "step": ck.step,
             "pass1": ck.metrics["pass1"], "threads": 1 if jobs > 1 else torch.get_num_threads()}
            for ck in checkpoints]
    return [cell for cells in run_jobs(grid_job, work, jobs, progress, "checkpoints")
            for cell in cells]


# ------------------------------------------------------------------------- summaries
def low_gap_cosine(cells: list[Cell], resolution: float) -> float:
    """Mean cosine over the counted cells in the lowest quartile of sampling gap."""
    counted = [c for c in cells if c.counted(resolution)]
    if not counted:
        return float("nan")
    q = np.quantile([c.gap for c in counted], 0.25)
    return float(np.mean([c.cosine for c in counted if c.gap <= q]))


def within_checkpoint_spearman(cells: list[Cell], resolution: float, x: str) -> tuple[float, dict]:
    """Spearman(x, error) over each checkpoint's counted cells, averaged over checkpoints
    with at least 3 counted cells. Returns (mean, {step: rho})."""
    per = {}
    for step in sorted({c.step for c in cells}):
        cs_ = [c for c in cells if c.step == step and c.counted(resolution)]
        if len(cs_) >= 3:
            per[step] = stats.spearman([getattr(c, x) for c in cs_], [c.error for c in cs_])
    vals = [v for v in per.values() if not np.isnan(v)]
    return (float(np.mean(vals)) if vals else float("nan")), per


def entropy_spearman_across_tau(cells: list[Cell], resolution: float) -> tuple[float, dict]:
    """For each (checkpoint, τ_r) with ≥ 3 counted cells: Spearman(entropy, error) across τ;
    averaged over those groups. Returns (mean, {(step, τ_r): rho})."""
    per = {}
    for step in sorted({c.step for c in cells}):
        for tau_r in sorted({c.tau_r for c in cells}):
            g = [c for c in cells if c.step == step and c.tau_r == tau_r and c.counted(resolution)]
            if len(g) >= 3:
                per[(step, tau_r)] = stats.spearman([c.entropy for c in g], [c.error for c in g])
    vals = [v for v in per.values() if not np.isnan(v)]
    return (float(np.mean(vals)) if vals else float("nan")), per


@dataclass
class IdentityCheck:
    cosine: float            # mean λ^D at the prompt embeddings vs exact ∇V^D (concatenated)
    exact_values: list[float]
    mc_rewards: list[float]


def identity_check(model, prompts, answers, n_rollouts: int, temperature: float,
                   seed: int) -> IdentityCheck:
    """``E[λ^D] = ∇_z V^D``: the mean empirical costate against the enumerated exact gradient."""
    d = cs.discrete_rollouts(model, prompts, answers, n_rollouts, temperature,
                             torch.Generator().manual_seed(seed), layers=False)
    Lp = prompts.shape[1]
    mean_d = d.costates["embed"][:, :Lp].view(prompts.shape[0], n_rollouts, Lp, -1).mean(1)
    exact, values = [], []
    for p in range(prompts.shape[0]):
        v, g = cs.exact_value_gradient(model, prompts[p], answers[p], temperature)
        exact.append(g.reshape(-1))
        values.append(v)
    rewards = d.rewards.view(prompts.shape[0], n_rollouts).mean(1).tolist()
    return IdentityCheck(stats.cosine(mean_d.reshape(-1), torch.cat(exact)), values, rewards)


def ablation_check(model, prompts, answers, n_rollouts: int, temperature: float,
                   seed: int) -> tuple[float, float]:
    """Max |λ^D| at the prompt positions whose own prediction is not in the loss (all but the
    last), with the attention cut and without it."""
    Lp = prompts.shape[1]
    out = []
    for cut in (True, False):
        d = cs.discrete_rollouts(model, prompts, answers, n_rollouts, temperature,
                                 torch.Generator().manual_seed(seed), layers=False, cut=cut)
        out.append(float(d.costates["embed"][:, : Lp - 1].abs().max()))
    return out[0], out[1]
