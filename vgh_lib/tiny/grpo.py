"""GRPO for transformer policies: group advantages, the clipped loss, training.

Serves book/theory.md §2–§4: GRPO's actor update on a causal LM. Sampling and evaluation live in
:mod:`vgh_lib.tiny.sampling`.

Shapes: prompts (B, Lp), completions (B, La), logits (B, L, V).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vgh_lib.common import stats
from vgh_lib.common.impact import largest_drop
from vgh_lib.tiny.sampling import (
    completion_logprobs,
    encode_prompts,
    exact_value,
    exact_values,
    generate,
    gumbel_noise,
)
from vgh_lib.tiny.tasks import Example

AGGREGATIONS = ("token", "sequence")


# -------------------------------------------------------------------- advantages and loss
def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """``A_i = (r_i − mean_group) / (std_group + eps)`` over consecutive groups, (B,).

    ``std_group`` is the population standard deviation (no Bessel correction). TRL's
    ``GRPOTrainer`` divides by the Bessel-corrected std plus ``1e-4`` instead; with
    ``c = sqrt(G/(G−1))`` its advantages are exactly ``group_advantages(r, G, 1e-4/c) / c``.
    """
    g = rewards.view(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, unbiased=False, keepdim=True) + eps)).view(-1)


def group_update(model, prompts: torch.Tensor, answers: torch.Tensor, group_size: int,
                 temperature: float, generator: torch.Generator,
                 weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's estimate of the expected GRPO update at θ, ``weight · mean_i A_i Σ_s ∇_θ
    log π(a_s^i)`` over the trainable parameters (flattened, float64, zeros where a parameter
    is unused), with group-normalised advantages; and the (B·G,) rewards. ``prompts`` (B, Lp)
    and ``answers`` (B, La) hold equal-length prompts; each is sampled ``group_size`` times."""
    device = prompts.device
    prompts = prompts.repeat_interleave(group_size, 0)
    answers = answers.repeat_interleave(group_size, 0)
    La = answers.shape[1]
    noise = gumbel_noise((prompts.shape[0], La, model.config.vocab_size), generator, device)
    comp = generate(model, prompts, La, temperature, noise)
    rewards = (comp == answers).all(1).float()
    adv = group_advantages(rewards, group_size)
    logp = completion_logprobs(model, prompts, comp, temperature)
    surrogate = (adv[:, None] * logp).sum(1).mean() * weight
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(surrogate, params, allow_unused=True)
    flat = torch.cat([g.reshape(-1) if g is not None else torch.zeros(p.numel(), device=device)
                      for g, p in zip(grads, params, strict=True)]).detach().double()
    return flat, rewards


def grpo_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip: float, aggregation: str = "token",
              logp_ref: torch.Tensor | None = None, kl_coef: float = 0.0):
    """The GRPO loss (to minimise) and diagnostics.

    Per token: ``−min(ρA, clip(ρ, 1±ε)A) + β·KL``, ``ρ = exp(logp − logp_old)``, with the
    k3 estimator ``KL = exp(ref − logp) − (ref − logp) − 1``. ``token`` aggregation averages
    over all unmasked tokens of the batch; ``sequence`` averages within each sequence first.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    ratio = torch.exp(logp - logp_old)
    adv = advantages[:, None]
    pg_loss1 = ratio * adv
    pg_loss2 = torch.clamp(ratio, 1 - clip, 1 + clip) * adv
    per_token = -torch.minimum(pg_loss1, pg_loss2)
    kl = torch.zeros_like(per_token)
    if logp_ref is not None and kl_coef > 0:
        diff = logp_ref - logp
        kl = torch.exp(diff) - diff - 1
        per_token = per_token + kl_coef * kl
    mask = mask.to(per_token.dtype)
    if aggregation == "token":
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
    else:
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    clipfrac = (((ratio - 1).abs() > clip).to(mask.dtype) * mask).sum() / mask.sum().clamp(min=1)
    kl_mean = (kl.detach() * mask).sum() / mask.sum().clamp(min=1)
    return loss, {"clipfrac": float(clipfrac), "kl": float(kl_mean)}


# ---------------------------------------------------------------------------- training
OPTIMIZERS = ("adamw", "sgd")


@dataclass(frozen=True)
class GRPOConfig:
    """One GRPO run. ``optimizer`` is ``adamw`` (no weight decay) or plain ``sgd``: under SGD
    the step is ``lr·∇``, so its size scales with the signal ``S = ‖∇J‖``; Adam normalises it.

    Every ``probe_every`` steps (and at step 0 and the end) the exact value ``J`` of the fixed
    probe prompts is recorded: a noise-free reading of whether the run improves the policy.
    """

    steps: int = 60
    prompts_per_step: int = 16
    group_size: int = 8
    temperature: float = 1.0
    lr: float = 1e-4
    optimizer: str = "adamw"
    clip: float = 0.2
    inner_epochs: int = 1
    kl_coef: float = 0.0
    aggregation: str = "token"
    adv_eps: float = 1e-6   # added to the group std in the advantages (TRL: 1e-4, on a Bessel std)
    probe_every: int = 5
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        for name in ("steps", "probe_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    def make_optimizer(self, params):
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr)
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=0.0)


@dataclass
class GRPOHistory:
    """Per step: the training batch's mean reward, clip fraction and KL; and the exact value of
    the probe prompts at ``probe_steps``."""

    mean_reward: list[float] = field(default_factory=list)
    clipfrac: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    probe_steps: list[int] = field(default_factory=list)
    probe_value: list[float] = field(default_factory=list)

    def largest_drop(self) -> float:
        """How far the probe value ever fell below its value before training (≥ 0)."""
        return largest_drop(self.probe_value)

    def collapsed(self, tolerance: float = 0.05) -> bool:
        """The probe value fell more than ``tolerance`` below its start at some point."""
        return self.largest_drop() > tolerance


def train(model, tokenizer, train_examples: list[Example], cfg: GRPOConfig,
          ref_model=None, progress: bool = False,
          probe_examples: list[Example] | None = None, sign: float = 1.0) -> GRPOHistory:
    """GRPO with the PPO-clip ratio over ``inner_epochs``, in place on ``model``.

    ``probe_examples`` (default: the first 64 training examples) are the prompts whose exact
    value the history records. ``sign = −1`` descends the objective instead: only for tests
    that check that the real sign raises J.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = cfg.make_optimizer(model.parameters())
    history = GRPOHistory()
    probe = probe_examples if probe_examples is not None else train_examples[:64]

    def record_probe(step):
        model.eval()
        history.probe_steps.append(step)
        history.probe_value.append(exact_value(model, tokenizer, probe, cfg.temperature))

    record_probe(0)
    V = model.config.vocab_size
    for step in tqdm(range(cfg.steps), desc="GRPO", disable=not progress, mininterval=5):
        idx = torch.randint(len(train_examples), (cfg.prompts_per_step,), generator=gen)
        prompts, answers = encode_prompts(tokenizer, [train_examples[i] for i in idx], device)
        prompts = prompts.repeat_interleave(cfg.group_size, 0)
        answers = answers.repeat_interleave(cfg.group_size, 0)
        La = answers.shape[1]
        model.eval()
        noise = gumbel_noise((prompts.shape[0], La, V), gen, device)
        comp = generate(model, prompts, La, cfg.temperature, noise)
        rewards = (comp == answers).all(1).float()
        adv = group_advantages(rewards, cfg.group_size, cfg.adv_eps)
        mask = torch.ones_like(comp, dtype=torch.float32)
        with torch.no_grad():
            logp_old = completion_logprobs(model, prompts, comp, cfg.temperature)
            logp_ref = (completion_logprobs(ref_model, prompts, comp, cfg.temperature)
                        if ref_model is not None and cfg.kl_coef > 0 else None)
        # the update stays in eval mode: with dropout, train mode would make ρ ≠ 1 at θ_old
        stats = {"clipfrac": 0.0, "kl": 0.0}
        for _ in range(cfg.inner_epochs):
            logp = completion_logprobs(model, prompts, comp, cfg.temperature)
            loss, stats = grpo_loss(logp, logp_old, adv, mask, cfg.clip, cfg.aggregation,
                                    logp_ref, cfg.kl_coef)
            opt.zero_grad(set_to_none=True)
            (sign * loss).backward()
            opt.step()
        history.mean_reward.append(float(rewards.mean()))
        history.clipfrac.append(stats["clipfrac"])
        history.kl.append(stats["kl"])
        if (step + 1) % cfg.probe_every == 0 or step + 1 == cfg.steps:
            record_probe(step + 1)
    model.eval()
    return history


@dataclass
class RLRun:
    """GRPO from one checkpoint: the exact per-prompt values of the held-out prompts before and
    after (their mean is the expected pass@1), and the training history."""

    before: np.ndarray   # (P,) exact value of each held-out prompt before RL
    after: np.ndarray    # (P,) the same prompts after RL
    history: GRPOHistory

    @property
    def gain(self) -> float:
        """The paired gain in expected held-out pass@1, without evaluation noise."""
        return float(np.mean(self.after - self.before))


def rl_from_checkpoint(path, train_examples: list[Example], held_out: list[Example],
                       cfg: GRPOConfig, device: str = "cpu", progress: bool = False,
                       probe_examples: list[Example] | None = None) -> RLRun:
    """Load a checkpoint, run GRPO with a fixed budget, and measure the exact held-out values
    before and after on the same prompts (a paired gain with no evaluation noise)."""
    from vgh_lib.tiny.models import load_local

    model, tokenizer = load_local(path, device)
    ref_model = load_local(path, device)[0].requires_grad_(False) if cfg.kl_coef > 0 else None
    before = exact_values(model, tokenizer, held_out, cfg.temperature)
    history = train(model, tokenizer, train_examples, cfg, ref_model=ref_model, progress=progress,
                    probe_examples=probe_examples)
    after = exact_values(model, tokenizer, held_out, cfg.temperature)
    return RLRun(before, after, history)


# ------------------------------------------------------- the signal S (book/theory.md §4)
def grpo_update(model, tokenizer, examples, group_size: int, temperature: float,
                generator: torch.Generator) -> torch.Tensor:
    """One batch's expected-update estimate at θ: ``mean_i A_i Σ_s ∇_θ log π(a_s^i)``,
    flattened over all parameters (float64), with GRPO's group-normalised advantages
    (:func:`vgh_lib.tiny.grpo.group_update`)."""
    prompts, answers = encode_prompts(tokenizer, examples, next(model.parameters()).device)
    return group_update(model, prompts, answers, group_size, temperature, generator)[0]


def signal_gram(model, tokenizer, train_examples, n_batches: int, n_prompts: int,
                group_size: int, temperature: float, seed: int) -> np.ndarray:
    """The (M, M) Gram matrix of ``n_batches`` independent GRPO-update estimates, each from
    ``n_prompts`` distinct training prompts (no prompt is in two batches)."""
    if n_batches < 2:
        raise ValueError(f"the signal needs at least 2 batches, got {n_batches}")
    if n_batches * n_prompts > len(train_examples):
        raise ValueError(f"{n_batches} batches of {n_prompts} prompts need more than the "
                         f"{len(train_examples)} training prompts")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train_examples), generator=gen)[: n_batches * n_prompts].tolist()
    return stats.gram_matrix([grpo_update(model, tokenizer,
                                          [train_examples[i] for i in idx[b * n_prompts:(b + 1) * n_prompts]],
                                          group_size, temperature, gen)
                              for b in range(n_batches)])
