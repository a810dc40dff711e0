"""GRPO for transformer policies: sampling, group advantages, the clipped loss, evaluation.

Serves THEORY.md §2–§4: GRPO's actor update on a causal LM. Sampling uses the Gumbel-max
trick, ``a = argmax(ℓ/τ + g)`` with Gumbel noise ``g`` drawn up front from a seeded
generator: the same distribution as softmax sampling at temperature τ, reproducible, and
the noise is what the relaxed rollout of Theorem 2 reuses.

Shapes: prompts (B, Lp), completions (B, La), logits (B, L, V).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from vgh_lib.tasks import Example

AGGREGATIONS = ("token", "sequence")


# ----------------------------------------------------------------------- sampling
def gumbel_noise(shape, generator: torch.Generator, device="cpu") -> torch.Tensor:
    """i.i.d. standard Gumbel noise ``−log(−log U)``."""
    u = torch.rand(shape, generator=generator, dtype=torch.float32).clamp_(1e-10, 1 - 1e-7)
    return (-torch.log(-torch.log(u))).to(device)


def _forward(model, ids, cache=None):
    out = model(input_ids=ids, attention_mask=None, cache=cache, use_cache=True)
    return out.logits, out.cache


@torch.no_grad()
def generate(model, prompts: torch.Tensor, n_new: int, temperature: float,
             noise: torch.Tensor | None = None, use_cache: bool = True) -> torch.Tensor:
    """Sample ``n_new`` tokens after each prompt: ``argmax(ℓ/τ + g)`` (greedy when τ = 0).

    ``noise`` (B, n_new, V) is the Gumbel noise; with the same noise, cached generation and
    full recomputation give the same tokens. Returns completions (B, n_new).
    """
    ids, cache, out = prompts, None, []
    for s in range(n_new):
        if use_cache:
            logits, cache = _forward(model, ids if s == 0 else ids[:, -1:], cache)
        else:
            logits = model(input_ids=ids).logits
        last = logits[:, -1].float()  # (B, V)
        if temperature == 0:
            tok = last.argmax(-1)
        else:
            tok = (last / temperature + noise[:, s]).argmax(-1)
        out.append(tok)
        ids = torch.cat([ids, tok[:, None]], dim=1)
    return torch.stack(out, dim=1)


def completion_logprobs(model, prompts: torch.Tensor, completions: torch.Tensor,
                        temperature: float) -> torch.Tensor:
    """``log π_τ(a_s | prefix)`` of every completion token, (B, La), with gradients."""
    ids = torch.cat([prompts, completions], dim=1)
    logits = model(input_ids=ids).logits[:, prompts.shape[1] - 1:-1].float()  # (B, La, V)
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return logp.gather(-1, completions[..., None]).squeeze(-1)


# -------------------------------------------------------------------- advantages and loss
def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """``A_i = (r_i − mean_group) / (std_group + eps)`` over consecutive groups, (B,)."""
    g = rewards.view(-1, group_size)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, unbiased=False, keepdim=True) + eps)).view(-1)


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
    return loss, {"clipfrac": float(clipfrac), "kl": float((kl * mask).sum() / mask.sum().clamp(min=1))}


# -------------------------------------------------------------------------- evaluation
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` successes: ``1 − C(n−c, k)/C(n, k)``."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 ≤ c ≤ n and 1 ≤ k ≤ n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def encode_prompts(tokenizer, examples: list[Example], device) -> tuple[torch.Tensor, torch.Tensor]:
    """``<bos> prompt`` ids (B, Lp) and answer ids (B, La); prompts of a task share a length."""
    prompts = [[tokenizer.bos_token_id] + tokenizer(e.prompt)["input_ids"] for e in examples]
    answers = [tokenizer(e.answer)["input_ids"] for e in examples]
    return torch.tensor(prompts, device=device), torch.tensor(answers, device=device)


@dataclass
class Evaluation:
    """Per prompt: ``successes`` out of ``n_samples`` at the temperature, and greedy success."""

    successes: np.ndarray      # (P,)
    greedy: np.ndarray         # (P,) 0/1
    n_samples: int
    k: int

    @property
    def pass1(self) -> float:
        return float(np.mean(self.successes / self.n_samples))

    @property
    def passk(self) -> float:
        return float(np.mean([pass_at_k(self.n_samples, int(c), self.k) for c in self.successes]))

    @property
    def greedy_accuracy(self) -> float:
        return float(np.mean(self.greedy))

    def per_prompt_pass1(self) -> np.ndarray:
        return self.successes / self.n_samples


@torch.no_grad()
def evaluate(model, tokenizer, examples: list[Example], n_samples: int, k: int,
             temperature: float, generator: torch.Generator, batch_prompts: int = 64) -> Evaluation:
    """Sample ``n_samples`` completions per prompt; count exact matches; also greedy decoding."""
    device = next(model.parameters()).device
    succ, greedy = [], []
    V = model.config.vocab_size
    for i in range(0, len(examples), batch_prompts):
        chunk = examples[i:i + batch_prompts]
        prompts, answers = encode_prompts(tokenizer, chunk, device)
        La = answers.shape[1]
        g = generate(model, prompts, La, 0.0)
        greedy.append((g == answers).all(1).cpu().numpy().astype(float))
        rep = prompts.repeat_interleave(n_samples, 0)
        noise = gumbel_noise((rep.shape[0], La, V), generator, device)
        comp = generate(model, rep, La, temperature, noise)
        ok = (comp == answers.repeat_interleave(n_samples, 0)).all(1).view(len(chunk), n_samples)
        succ.append(ok.sum(1).cpu().numpy())
    return Evaluation(np.concatenate(succ), np.concatenate(greedy), n_samples, k)


# ---------------------------------------------------------------------------- training
@dataclass(frozen=True)
class GRPOConfig:
    steps: int = 60
    prompts_per_step: int = 16
    group_size: int = 8
    temperature: float = 1.0
    lr: float = 1e-3
    clip: float = 0.2
    inner_epochs: int = 1
    kl_coef: float = 0.0
    aggregation: str = "token"
    seed: int = 0


@dataclass
class GRPOHistory:
    mean_reward: list[float] = field(default_factory=list)
    clipfrac: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)


def train(model, tokenizer, train_examples: list[Example], cfg: GRPOConfig,
          ref_model=None, progress: bool = False) -> GRPOHistory:
    """GRPO with the PPO-clip ratio over ``inner_epochs``, in place on ``model``."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    history = GRPOHistory()
    V = model.config.vocab_size
    for _ in tqdm(range(cfg.steps), desc="GRPO", disable=not progress, mininterval=5):
        idx = torch.randint(len(train_examples), (cfg.prompts_per_step,), generator=gen)
        prompts, answers = encode_prompts(tokenizer, [train_examples[i] for i in idx], device)
        prompts = prompts.repeat_interleave(cfg.group_size, 0)
        answers = answers.repeat_interleave(cfg.group_size, 0)
        La = answers.shape[1]
        model.eval()
        noise = gumbel_noise((prompts.shape[0], La, V), gen, device)
        comp = generate(model, prompts, La, cfg.temperature, noise)
        rewards = (comp == answers).all(1).float()
        adv = group_advantages(rewards, cfg.group_size)
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
            loss.backward()
            opt.step()
        history.mean_reward.append(float(rewards.mean()))
        history.clipfrac.append(stats["clipfrac"])
        history.kl.append(stats["kl"])
    model.eval()
    return history


@dataclass
class RLRun:
    """GRPO from one checkpoint: held-out evaluations before and after, and the history."""

    before: Evaluation
    after: Evaluation
    history: GRPOHistory

    @property
    def gain(self) -> float:
        return self.after.pass1 - self.before.pass1


def rl_from_checkpoint(path, train_examples: list[Example], held_out: list[Example],
                       cfg: GRPOConfig, eval_samples: int, k: int, device: str = "cpu",
                       progress: bool = False) -> RLRun:
    """Load a checkpoint, evaluate, run GRPO with a fixed budget, evaluate again.

    Both evaluations use the same held-out prompts and the same evaluation noise seed.
    """
    from vgh_lib.models import load_local

    model, tokenizer = load_local(path, device)
    ref_model = load_local(path, device)[0].requires_grad_(False) if cfg.kl_coef > 0 else None
    eval_seed = cfg.seed + 7_777_777
    before = evaluate(model, tokenizer, held_out, eval_samples, k, cfg.temperature,
                      torch.Generator().manual_seed(eval_seed))
    history = train(model, tokenizer, train_examples, cfg, ref_model=ref_model, progress=progress)
    after = evaluate(model, tokenizer, held_out, eval_samples, k, cfg.temperature,
                     torch.Generator().manual_seed(eval_seed))
    return RLRun(before, after, history)
