"""The exact signal ``S``: the norm of the expected GRPO update, without sampling, for a binary
exact-match reward (book/theory.md §4, "The exact expected GRPO update for a binary reward").

For one prompt x with success probability ``p`` (the probability of its correct answer), a GRPO
group of G samples and group-normalised advantages ``A_i``, the expected update is

    E[(1/G) Σ_i A_i ∇ log π(a_i | x)] = a_G(p) · ∇p,

with the **advantage gap** ``a_G(p) = E[A | r = 1] − E[A | r = 0]``: A depends on a sample only
through its reward, and the wrong answers' score terms add up to ``∇(1 − p) = −∇p``. Given the
sample's own reward, the other G − 1 rewards are binomial, so :func:`advantage_gap` is a finite
sum. Over N prompts the expected update is ``g = (1/N) Σ_x a_x ∇p_x``, the gradient of
``(1/N) Σ_x a_x p_x(θ)`` with the weights held fixed, and its squared norm splits into

* a **self** term ``(1/N²) Σ_x a_x² ‖∇p_x‖²``, which shrinks like 1/N, and
* an **alignment** term ``(1/N²) Σ_{x≠x'} a_x a_x' ⟨∇p_x, ∇p_x'⟩``: whether improving one
  prompt improves the others, which a gain on held-out prompts needs. It is not a function of
  the success rates.

:func:`exact_signal` computes ``S = ‖g‖`` and both terms from one teacher-forced gradient per
prompt; the model enters only through a function that returns the prompts' log-probabilities
with their graph, so the tiny models, a real LM and the probe share this one implementation.
The reconstruction is ours; the paper's abstract states none of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from math import comb

import numpy as np

ADVANTAGE_EPS = 1e-6
"""The ε of ``(r − mean)/(std + ε)`` in the library's GRPO (:func:`vgh_lib.tiny.grpo.group_advantages`)."""


def advantage_gap(p, group_size: int, eps: float = ADVANTAGE_EPS, normalise: bool = True) -> np.ndarray:
    """``a_G(p) = E[A | r = 1] − E[A | r = 0]`` for groups of ``group_size`` samples whose
    advantages are ``A_i = (r_i − mean)/(std + eps)`` (population std over the group, the
    sample's own reward included), or ``r_i − mean`` when ``normalise`` is False (then
    ``a_G = 1 − 1/G`` for every p). Exact: a sum over the binomial of the other G − 1 rewards.
    ``p``: success probabilities, any shape."""
    if group_size < 2:
        raise ValueError(f"group_size must be ≥ 2, got {group_size}")
    if eps < 0:
        raise ValueError(f"eps must be ≥ 0, got {eps}")
    p = np.asarray(p, dtype=float)
    if np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError("success probabilities must lie in [0, 1]")
    G = group_size

    def advantage(own: int, successes: int) -> float:
        mean = successes / G
        if not normalise:
            return own - mean
        std = np.sqrt(mean * (1 - mean))
        return 0.0 if std + eps == 0 else (own - mean) / (std + eps)

    gap = np.zeros_like(p)
    for k in range(G):                       # successes among the other G − 1 samples
        weight = comb(G - 1, k) * p ** k * (1 - p) ** (G - 1 - k)
        gap += weight * (advantage(1, k + 1) - advantage(0, k))
    return gap


@dataclass(frozen=True)
class ExactSignal:
    """``S = ‖g‖`` of the expected update ``g = (1/N) Σ_x a_x ∇p_x`` and its two parts
    (``S² = self_term + alignment``), with the cost of computing them."""

    S: float
    self_term: float
    alignment: float
    n_prompts: int
    seconds: float


def exact_signal(logp_fn, params, n_prompts: int, group_size: int, eps: float = ADVANTAGE_EPS,
                 normalise: bool = True):
    """The exact signal of ``n_prompts`` prompts: ``(ExactSignal, g)``, ``g`` the expected
    update (flattened over ``params``, float64).

    ``logp_fn(i)`` returns prompt ``i``'s log-probability of its correct answer, ``log p_i``, as
    a 0-d tensor with its graph to ``params``. One forward and backward pass a prompt; the
    weights ``a_G(p_i)`` (:func:`advantage_gap`) are held fixed."""
    import torch

    if n_prompts < 1:
        raise ValueError(f"n_prompts must be ≥ 1, got {n_prompts}")
    params = list(params)
    start = time.perf_counter()
    # one float64 accumulator per parameter, updated in place: for a real LM a flattened copy
    # of every prompt's gradient would allocate gigabytes per prompt
    update = [torch.zeros(w.shape, dtype=torch.float64, device=w.device) for w in params]
    self_sum = 0.0
    for i in range(n_prompts):
        logp = logp_fn(i)
        p = float(logp.detach().exp())
        a = float(advantage_gap(p, group_size, eps, normalise))
        grads = torch.autograd.grad(logp.exp(), params, allow_unused=True)
        sq = 0.0
        for acc, g in zip(update, grads):
            if g is None:
                continue
            g = g.double()
            acc.add_(g, alpha=a)
            sq += float(g.pow(2).sum())
        self_sum += a * a * sq
    flat = torch.cat([u.reshape(-1) for u in update]) / n_prompts
    s2 = float(flat @ flat)
    self_term = self_sum / n_prompts ** 2
    return ExactSignal(float(np.sqrt(s2)), self_term, s2 - self_term, n_prompts,
                       time.perf_counter() - start), flat


def expected_update(logp, params, group_size: int, eps: float = ADVANTAGE_EPS,
                    normalise: bool = True):
    """The expected update ``g = (1/N) Σ_x a_G(p_x) ∇p_x`` from ``logp``, the (N,) tensor of the
    prompts' log success probabilities with their graph, by **one** backward pass of
    ``(1/N) Σ_x a_x p_x`` with the weights held fixed: ``(‖g‖, g)``, ``g`` flattened (float64).
    :func:`exact_signal` gives the same ``g`` with its self and alignment terms, at one backward
    pass a prompt."""
    import torch

    params = list(params)
    p = logp.detach().exp().double().cpu().numpy()
    a = torch.as_tensor(advantage_gap(p, group_size, eps, normalise), dtype=logp.dtype, device=logp.device)
    grads = torch.autograd.grad((a * logp.exp()).sum() / logp.numel(), params, allow_unused=True)
    flat = torch.cat([(g if g is not None else torch.zeros_like(w)).reshape(-1).double()
                      for g, w in zip(grads, params)])
    return float(flat.norm()), flat


def adamw_signal(mean_update, sampled_updates) -> float:
    """``Σ_j (E g_j)² / sqrt(E g_j²)``: the size of the expected first AdamW step along the
    expected update (early AdamW steps are close to ``lr · sign(g)`` coordinate by coordinate,
    so a coordinate counts by its signal-to-noise ratio, not its size). ``mean_update`` (D,):
    the exact expected update; ``sampled_updates`` (M, D): sampled updates of one optimizer
    step, whose mean square estimates ``E g_j²``. Coordinates with ``E g_j² = 0`` add 0."""
    m = np.asarray(mean_update, dtype=float)
    samples = np.asarray(sampled_updates, dtype=float)
    if samples.ndim != 2 or samples.shape[1] != m.shape[0]:
        raise ValueError(f"sampled_updates must be (M, {m.shape[0]}) for {m.shape[0]} coordinates, "
                         f"got {samples.shape}")
    second = (samples ** 2).mean(0)
    keep = second > 0
    return float((m[keep] ** 2 / np.sqrt(second[keep])).sum())
