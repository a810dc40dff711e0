"""The GRPO update and the signal ``S`` for a real pretrained language model, one prompt at a time.

Groundwork for THEORY.md §4 on a real LM (the axis is *tasks*, not checkpoints; issue 11's
second half, not yet in the book). The prompts of a real LM differ in length, so everything
here works per prompt and shares the prompt's forward pass between its G samples
(:func:`vgh_lib.lm_costates.sample` for sampling, an expanded KV cache for the update). Only
the top ``train_layers`` transformer blocks and the final norm take part
(:func:`train_top_layers`), which a CPU budget needs; the signal ``S`` is the norm of the
expected update of those same parameters (:func:`signal_gram`, whose Gram matrix
:func:`vgh_lib.impact.signal` turns into ``S``). A training step is ``accumulate_update`` with
``scale = −1/T`` followed by an optimizer step.

With one update per batch the PPO ratio is 1 at the current parameters and clipping is
inactive, so the GRPO loss's gradient is ``−(1/T) Σ_i A_i ∇ log P(a_i | x)`` with
``A_i = (r_i − mean)/(std + eps)`` over the prompt's group and ``T`` the batch's number of
answer tokens (the ``token`` aggregation of :func:`vgh_lib.grpo.grpo_loss`).
"""

from __future__ import annotations

import numpy as np
import torch

from vgh_lib import grpo, lm_costates, lm_tasks
from vgh_lib.lm_tasks import LMExample


def _blocks(model):
    """The transformer blocks and the final norm of a llama- or GPT-2-style causal LM."""
    inner = getattr(model, "model", None) or getattr(model, "transformer", None)
    blocks = getattr(inner, "layers", None) or getattr(inner, "h", None)
    norm = getattr(inner, "norm", None) or getattr(inner, "ln_f", None)
    if blocks is None or norm is None:
        raise ValueError(f"cannot find the transformer blocks of {type(model).__name__}")
    return blocks, norm


def train_top_layers(model, k: int) -> list[torch.nn.Parameter]:
    """Freeze everything but the top ``k`` blocks and the final norm; return those parameters.
    (:func:`restore_grad_flags` undoes it with the flags saved by :func:`grad_flags`.)"""
    blocks, norm = _blocks(model)
    if not 1 <= k <= len(blocks):
        raise ValueError(f"train_layers must be in [1, {len(blocks)}], got {k}")
    model.requires_grad_(False)
    params = []
    for module in (*blocks[-k:], norm):
        module.requires_grad_(True)
        params += list(module.parameters())
    return params


def grad_flags(model) -> list[bool]:
    return [p.requires_grad for p in model.parameters()]


def restore_grad_flags(model, flags: list[bool]) -> None:
    for p, flag in zip(model.parameters(), flags, strict=True):
        p.requires_grad_(flag)


def _encode(tokenizer, examples: list[LMExample], device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [tuple(t.to(device) for t in lm_tasks.encode(tokenizer, e)) for e in examples]


def accumulate_update(model, pairs, group_size: int, tau: float, generator: torch.Generator,
                      scale: float) -> float:
    """Sample a group per (prompt, answer) pair and add ``scale · Σ_i A_i ∇ log P(a_i)`` to the
    ``.grad`` of the trainable parameters. Groups with equal rewards carry no update and cost
    no backward pass. Returns the mean reward."""
    rewards_all = []
    for prompt, answer in pairs:
        tokens, _ = lm_costates.sample(model, prompt, answer.shape[0], group_size, tau, generator)
        rewards = lm_tasks.reward(answer, tokens)
        rewards_all.append(rewards)
        adv = grpo.group_advantages(rewards, group_size)
        if torch.all(adv == 0):
            continue
        z = lm_costates._embed(model)[prompt]
        (scale * (adv * lm_costates.cached_answer_logprobs(model, z, tokens, tau)).sum()).backward()
    return float(torch.cat(rewards_all).mean())


def signal_gram(model, tokenizer, examples: list[LMExample], n_batches: int, n_prompts: int,
                group_size: int, tau: float, train_layers: int, seed: int) -> np.ndarray:
    """The Gram matrix of ``n_batches`` independent estimates of the expected GRPO update of
    the trainable parameters, each from ``n_prompts`` distinct prompts (mean over prompts of
    ``(1/G) Σ_i A_i ∇ log P(a_i)``)."""
    if n_batches < 2:
        raise ValueError(f"the signal needs at least 2 batches, got {n_batches}")
    if n_batches * n_prompts > len(examples):
        raise ValueError(f"{n_batches} batches of {n_prompts} prompts need more than the "
                         f"{len(examples)} prompts")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(examples), generator=gen).tolist()
    batches = [_encode(tokenizer, [examples[i] for i in order[b * n_prompts:(b + 1) * n_prompts]],
                       device) for b in range(n_batches)]
    return gram_of_updates(model, batches, group_size, tau, train_layers, gen)


def gram_of_updates(model, batches, group_size: int, tau: float, train_layers: int,
                    generator: torch.Generator) -> np.ndarray:
    """The Gram matrix of the updates of ``batches`` (each a list of (prompt, answer) id
    pairs), drawn in order from ``generator``; the caller's requires-grad flags are restored."""
    flags = grad_flags(model)
    params = train_top_layers(model, train_layers)
    estimates = []
    for pairs in batches:
        for p in params:
            p.grad = None
        accumulate_update(model, pairs, group_size, tau, generator,
                          1.0 / (len(pairs) * group_size))
        estimates.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                    for p in params]).double())
    restore_grad_flags(model, flags)
    for p in params:
        p.grad = None
    g = torch.stack(estimates)
    return (g @ g.T).cpu().numpy()
