"""Sampling from a causal-LM policy and evaluating it: Gumbel-max generation, log-probabilities
of completions, the exact value of exact-match rewards, and pass@k.

Serves book/theory.md §3–§4. Sampling uses the Gumbel-max trick, ``a = argmax(ℓ/τ + g)`` with
Gumbel noise ``g`` drawn up front from a seeded generator: the same distribution as softmax
sampling at temperature τ, reproducible, and the noise is what the relaxed rollout of
Theorem 2 reuses. The pretraining trajectory's cache key depends on this module (its
evaluations use it), not on :mod:`vgh_lib.tiny.grpo`.

Shapes: prompts (B, Lp), completions (B, La), logits (B, L, V).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vgh_lib.common.stats import pass_at_k
from vgh_lib.tiny.tasks import Example


# ----------------------------------------------------------------------- sampling
def gumbel_noise(shape, generator: torch.Generator, device="cpu") -> torch.Tensor:
    """i.i.d. standard Gumbel noise ``−log(−log U)``.

    :func:`vgh_lib.lm.costates.gumbel` draws the same distribution another way (``−log E``,
    ``E ~ Exp(1)``). The two stay apart on purpose: each consumes its generator differently,
    so merging them would change every seeded result published with the other (the tiny
    models' notebooks 03–05 and 07 here, the real LM's 06 and 08 there)."""
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


# -------------------------------------------------------------------------- evaluation
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


def answer_logprob(model, prompts: torch.Tensor, answers: torch.Tensor,
                   temperature: float) -> torch.Tensor:
    """``Σ_s log π_τ(c_s | x, c_<s)`` of the correct answer of every prompt by teacher forcing,
    (B,), with gradients: the log of the exact value of an exact-match reward."""
    return completion_logprobs(model, prompts, answers, temperature).sum(1)


@torch.no_grad()
def exact_values(model, tokenizer, examples: list[Example], temperature: float,
                 batch_prompts: int = 256) -> np.ndarray:
    """Per prompt, the exact expected exact-match reward ``Π_s π_τ(c_s | x, c_<s)``, (P,).

    For an exact-match reward the value of a prompt is the probability of its one correct
    answer, so one teacher-forced forward pass gives it: no sampling, no noise. It is also
    the expected pass@1 at temperature τ.
    """
    device = next(model.parameters()).device
    values = []
    for i in range(0, len(examples), batch_prompts):
        prompts, answers = encode_prompts(tokenizer, examples[i:i + batch_prompts], device)
        values.append(answer_logprob(model, prompts, answers, temperature).double().exp().cpu())
    return torch.cat(values).numpy()


def exact_value(model, tokenizer, examples: list[Example], temperature: float) -> float:
    """The exact objective ``J = E_x Π_s π_τ(c_s | x, c_<s)`` over ``examples``."""
    return float(exact_values(model, tokenizer, examples, temperature).mean())
