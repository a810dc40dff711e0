"""Theorem 2 in a real pretrained language model (book/theory.md §3, §4b; book/06_real_lm.md).

One prompt at a time (prompt ids ``(Lp,)``, correct answer ids ``(La,)``), for any local
causal LM that accepts ``inputs_embeds`` and a KV cache (llama, GPT-2, …):

* :func:`exact_value` — ``V^D(x) = Π_s π_τ(c_s | x, c_<s)``, the probability of the correct
  answer (the exact value of an exact-match reward), by one teacher-forced forward pass, and
  ``∇V^D`` with respect to the prompt's input embeddings by one backward pass.
* :func:`sample` — Gumbel-max rollouts ``a_s = argmax(ℓ_s/τ + g_s)``: the prompt's forward
  pass is computed once and its KV cache expanded for the N samples (``use_cache=False``
  recomputes everything, for the tests).
* :func:`answer_scores` — ``s_u = ∇_z log P_τ(u | x)`` for each *distinct* sampled answer
  ``u``; every empirical costate below is a linear combination of these.
* :func:`group_costates` — the empirical costate ``λ^D = (1/G) Σ_i A_i s_{a_i}`` of each group
  of G consecutive rollouts with the leave-one-out advantage ``A_i = R_i − mean_{j≠i} R_j``,
  for which ``E[λ^D] = ∇V^D``; :func:`grpo_batch_costate` computes one group directly, from
  the GRPO surrogate's own backward pass through the expanded prompt cache.
* :func:`identity_test` — ``E[λ^D] = ∇V^D`` against the Monte Carlo error: a t statistic
  along ``∇V^D`` and a z statistic of the U-statistic estimate of ``‖E[λ^D] − ∇V^D‖²``.
* :func:`relaxed_costates` — process C: Gumbel-softmax soft tokens
  ``y_s = softmax((ℓ_s/τ + g_s)/τ_r)`` fed back as ``y_sᵀE``, reward ``R̃ = Π_s y_s[c_s]``,
  and the mean BPTT costate ``∂R̃/∂z`` of independent blocks of rollouts.
* :func:`crossfit_cosine_exact` — the noise-corrected cosine of a Monte Carlo mean with an
  exact vector, from independent folds (our own; ``vgh_lib.common.stats`` has no version with one
  exact side).
* :func:`attention_share` — the share of ``‖∇V^D‖²`` at prompt positions before the last
  one, which reach the answer only through attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.autograd.profiler import record_function

from vgh_lib.common import stats
from vgh_lib.tiny.costates import loo_advantages


def _embed(model) -> torch.Tensor:
    return model.get_input_embeddings().weight.detach()


def _logits(model, z: torch.Tensor, cache=None, want_cache: bool = False):
    out = model(inputs_embeds=z, cache=cache, use_cache=want_cache or cache is not None)
    logits = out.logits if out.logits.dtype == torch.float64 else out.logits.float()
    return (logits, out.cache) if want_cache else logits


def exponential(shape, generator: torch.Generator) -> torch.Tensor:
    """Standard exponential noise (float32, CPU), bit for bit the values and the generator state
    of ``torch.empty(shape).exponential_(generator=generator)``, about twice as fast.

    PyTorch's CPU kernel draws one 64-bit word per value, keeps its low 53 bits as
    ``u = bits · 2⁻⁵³`` and returns ``−log1p(−u)`` in double, rounded to float32, one value at
    a time. The same words come from ``random_()`` on int64 (a 63-bit mask, which keeps those 53
    bits), and the transform then runs vectorised. ``tests/test_lm_batched.py`` checks the
    identity against the kernel, so a PyTorch that changes either fails there."""
    words = torch.empty(shape, dtype=torch.int64).random_(generator=generator)
    u = (words & ((1 << 53) - 1)).double().mul_(2.0 ** -53)
    return torch.log1p(u.neg_()).neg_().float()


def gumbel(shape, generator: torch.Generator, device="cpu") -> torch.Tensor:
    """i.i.d. standard Gumbel noise ``−log(−log U)`` (float32, drawn from a CPU generator so
    that a seed gives the same noise on every device). Why this is not
    :func:`vgh_lib.tiny.sampling.gumbel_noise`: see there."""
    e = exponential(shape, generator).clamp_min_(1e-30)  # −log U ~ Exp(1)
    return (-torch.log(e)).to(device)


# ------------------------------------------------------------------------------ exact value
def exact_value(model, prompt: torch.Tensor, answer: torch.Tensor, tau: float = 1.0,
                grad: bool = True) -> tuple[float, torch.Tensor | None, torch.Tensor]:
    """``(V^D, ∇_z V^D (Lp, d) or None, per-token probabilities (La,))`` by teacher forcing."""
    E = _embed(model)
    z = E[prompt].clone().requires_grad_(grad)
    inputs = torch.cat([z, E[answer[:-1]]], 0)[None]
    with torch.set_grad_enabled(grad):
        logits = _logits(model, inputs)[0, prompt.shape[0] - 1:]
        logp = torch.log_softmax(logits / tau, -1).gather(-1, answer[:, None]).squeeze(-1)
        value = logp.sum().exp()
        g = torch.autograd.grad(value, z)[0] if grad else None
    return float(value.detach()), g, logp.detach().exp()


def attention_share(value_grad: torch.Tensor) -> float:
    """Share of ``‖∇V^D‖²`` at the prompt positions before the last one (attention only)."""
    sq = value_grad.pow(2).sum(-1)
    return float(sq[:-1].sum() / sq.sum())


# -------------------------------------------------------------------------------- sampling
@torch.no_grad()
def sample(model, prompt: torch.Tensor, n_new: int, n: int, tau: float,
           generator: torch.Generator, use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` Gumbel-max rollouts of ``n_new`` tokens: ``(tokens (n, n_new), entropy (n, n_new))``.

    With the cache, the prompt is computed once (batch 1) and its cache expanded to ``n``
    rows; the noise of step ``s`` is drawn after step ``s − 1`` in both modes, so the same
    generator state gives the same tokens either way.
    """
    E = _embed(model)
    ids, cache, out, ent = prompt[None].expand(n, -1), None, [], []
    for s in range(n_new):
        if not use_cache:
            last = _logits(model, E[ids])[:, -1]
        elif s == 0:  # the prompt once, batch 1, then its cache expanded to n rows
            last, cache = _logits(model, E[prompt][None], want_cache=True)
            last = last[:, -1].expand(n, -1)
            cache.batch_repeat_interleave(n)
        else:
            last, cache = _logits(model, E[out[-1]][:, None], cache, want_cache=True)
            last = last[:, -1]
        logp = torch.log_softmax(last / tau, -1)
        ent.append(-(logp.exp() * logp).sum(-1))
        tok = (last / tau + gumbel(last.shape, generator, last.device)).argmax(-1)
        out.append(tok)
        ids = torch.cat([ids, tok[:, None]], 1)
    return torch.stack(out, 1), torch.stack(ent, 1)


def draw_and_score(last: torch.Tensor, n_new: int, tau: float, generator: torch.Generator,
                   advance) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-max tokens drawn from the logits ``last`` (G, V) and ``advance(tokens, s)`` (the
    logits after step ``s``'s tokens), scored as they are drawn: ``(tokens (G, n_new),
    Σ_s log π_τ(a_s | x, a_<s) (G,))``, with gradients through ``last`` and ``advance``. The
    noise of step ``s`` is drawn after step ``s − 1``, as in :func:`sample`."""
    tokens, logp = [], 0.0
    for s in range(n_new):
        with record_function("output layer"):
            logq = torch.log_softmax(last / tau, -1)
        with record_function("noise"):
            noise = gumbel(last.shape, generator, last.device)
        with record_function("sampling"):
            tok = (last.detach() / tau + noise).argmax(-1)
            tokens.append(tok)
            logp = logp + logq.gather(-1, tok[:, None]).squeeze(-1)
        if s < n_new - 1:
            last = advance(tok, s)
    return torch.stack(tokens, 1), logp


# ----------------------------------------------------------------------- empirical costate
def answer_scores(model, prompt: torch.Tensor, answers: torch.Tensor, tau: float,
                  chunk: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s (U, Lp, d), log P (U,))``: ``s_u = ∇_z log P_τ(u | x)`` for each row ``u`` of
    ``answers`` (U, La), at the prompt embeddings ``z``; one forward and backward per chunk,
    the prompt repeated once per row so that each row's gradient stays separate."""
    E = _embed(model)
    Lp = prompt.shape[0]
    scores, logps = [], []
    for i in range(0, answers.shape[0], chunk):
        a = answers[i:i + chunk]
        z = E[prompt].expand(a.shape[0], -1, -1).clone().requires_grad_(True)
        inputs = torch.cat([z, E[a[:, :-1]]], 1)
        logits = _logits(model, inputs)[:, Lp - 1:]
        logp = torch.log_softmax(logits / tau, -1).gather(-1, a[..., None]).squeeze(-1).sum(1)
        (g,) = torch.autograd.grad(logp.sum(), z)
        scores.append(g)
        logps.append(logp.detach())
    return torch.cat(scores), torch.cat(logps)


@dataclass
class Rollouts:
    """N sampled answers of one prompt, their rewards and the scores of the distinct ones."""

    tokens: torch.Tensor    # (N, La)
    rewards: torch.Tensor   # (N,)
    entropy: torch.Tensor   # (N, La) H(π_s) along each rollout
    inverse: torch.Tensor   # (N,) index of each rollout's answer among the distinct ones
    scores: torch.Tensor    # (U, Lp·d) s_u, flattened


def rollouts(model, prompt: torch.Tensor, answer: torch.Tensor, n: int, tau: float,
             generator: torch.Generator) -> Rollouts:
    """Sample ``n`` rollouts (KV-cached) and score their distinct answers."""
    tokens, entropy = sample(model, prompt, answer.shape[0], n, tau, generator)
    rewards = (tokens == answer[None]).all(1).float()
    uniq, inverse = torch.unique(tokens, dim=0, return_inverse=True)
    scores, _ = answer_scores(model, prompt, uniq, tau)
    return Rollouts(tokens, rewards, entropy, inverse, scores.reshape(uniq.shape[0], -1))


def group_costates(r: Rollouts, group_size: int) -> torch.Tensor:
    """``λ^D_k = (1/G) Σ_{i∈k} A_i s_{a_i}`` for each group k of ``group_size`` consecutive
    rollouts (leave-one-out advantages): (N // G, Lp·d)."""
    K = r.rewards.shape[0] // group_size
    n = K * group_size
    adv = loo_advantages(r.rewards[:n], group_size)
    W = torch.zeros(K, r.scores.shape[0], dtype=r.scores.dtype, device=r.scores.device)
    rows = torch.arange(n, device=W.device) // group_size
    W.index_put_((rows, r.inverse[:n]), adv.to(W.dtype) / group_size,
                 accumulate=True)
    return W @ r.scores


def grpo_batch_costate(model, prompt: torch.Tensor, tokens: torch.Tensor, rewards: torch.Tensor,
                       tau: float) -> torch.Tensor:
    """One group's λ^D from the surrogate ``(1/G) Σ_i A_i log P(a_i)``: the prompt's forward
    pass computed once (batch 1, with gradient) and its cache expanded to the G rollouts;
    (Lp, d)."""
    z = _embed(model)[prompt].clone().requires_grad_(True)
    logp = cached_answer_logprobs(model, z, tokens, tau)
    surrogate = (loo_advantages(rewards, tokens.shape[0]) * logp).sum() / tokens.shape[0]
    return torch.autograd.grad(surrogate, z)[0]


def cached_answer_logprobs(model, z: torch.Tensor, tokens: torch.Tensor, tau: float) -> torch.Tensor:
    """``Σ_s log π_τ(a_s | x, a_<s)`` of each row of ``tokens`` (G, La), (G,), with gradients,
    from the prompt's input embeddings ``z`` (Lp, d): the prompt's forward pass once (batch 1),
    its KV cache expanded to the G rows."""
    E = _embed(model)
    G, La = tokens.shape
    last, cache = _logits(model, z[None], want_cache=True)
    cache.batch_repeat_interleave(G)
    logits = last[:, -1:].expand(G, -1, -1)  # (G, 1, V) predicts a_1
    if La > 1:
        logits = torch.cat([logits, _logits(model, E[tokens[:, :-1]], cache)], 1)
    return torch.log_softmax(logits / tau, -1).gather(-1, tokens[..., None]).squeeze(-1).sum(1)


# ---------------------------------------------------------------------------- the identity
@dataclass
class IdentityTest:
    cosine: float          # cosine of the mean of all groups with ∇V^D
    t_parallel: float      # t statistic of ⟨λ^D_k − ∇V^D, u⟩, u = ∇V^D/‖∇V^D‖
    bias_sq: float         # U-statistic estimate of ‖E[λ^D] − ∇V^D‖² (unbiased; may be < 0)
    bias_z: float          # bias_sq / its jackknife standard error
    rel_bias: float        # sqrt(max(0, bias_sq)) / ‖∇V^D‖
    predicted_cosine: float  # ‖g‖ / sqrt(‖g‖² + tr Σ / K): the cosine noise alone allows
    n_groups: int


def identity_test(groups: torch.Tensor, exact: torch.Tensor) -> IdentityTest:
    """Test ``E[λ^D] = ∇V^D`` with K ≥ 3 independent group estimates ``groups`` (K, D)."""
    X = groups.detach().double().cpu().numpy().reshape(groups.shape[0], -1)
    g = exact.detach().double().cpu().numpy().ravel()
    K = X.shape[0]
    if K < 3:
        raise ValueError(f"need at least 3 groups, got {K}")
    e = X - g
    gn = np.linalg.norm(g)
    proj = e @ (g / gn)
    sd = proj.std(ddof=1)
    t = float(proj.mean() / (sd / math.sqrt(K))) if sd > 0 else float("nan")
    u = stats.mean_offdiag_inner(e)
    loo = np.array([stats.mean_offdiag_inner(np.delete(e, k, 0)) for k in range(K)]) if K >= 4 else None
    se = math.sqrt((K - 1) / K * np.sum((loo - loo.mean()) ** 2)) if loo is not None else float("nan")
    mean = X.mean(0)
    trace = float(np.sum((X - mean) ** 2) / (K - 1))
    return IdentityTest(
        cosine=float(mean @ g / (np.linalg.norm(mean) * gn)), t_parallel=t, bias_sq=u,
        bias_z=float(u / se) if se > 0 else float("nan"), rel_bias=float(math.sqrt(max(0.0, u)) / gn),
        predicted_cosine=float(gn / math.sqrt(gn ** 2 + trace / K)), n_groups=K)


def fidelity(r: Rollouts, exact: torch.Tensor, group_size: int) -> tuple[float, float]:
    """``(mean cosine, share of zero groups)``: one GRPO batch's λ^D against ∇V^D, over the
    N // G groups of ``group_size``; a group whose rewards are all equal has λ^D = 0 and
    counts as cosine 0 (it carries no signal)."""
    X = group_costates(r, group_size).double()
    g = exact.reshape(-1).double()
    norms = X.norm(dim=1)
    cos = torch.where(norms > 0, X @ g / (norms.clamp_min(1e-300) * g.norm()), torch.zeros_like(norms))
    return float(cos.mean()), float((norms == 0).double().mean())


# --------------------------------------------------------------------- relaxed process C
@dataclass
class Relaxed:
    blocks: torch.Tensor   # (K, Lp, d) mean λ^C of each independent block
    reward: float          # mean relaxed reward R̃
    gap: float             # E Σ_s ‖E[a_s] − y_sᵀE‖ (a_s = argmax(ℓ_s/τ + g_s), same noise)
    entropy: float         # E Σ_s H(π_s) along the relaxed rollouts


def relaxed_costates(model, prompt: torch.Tensor, answer: torch.Tensor, n: int, tau: float,
                     tau_r: float, generator: torch.Generator, n_blocks: int = 4) -> Relaxed:
    """Process C for ``n`` rollouts in ``n_blocks`` independent blocks: the prompt's forward
    pass runs once per block (batch ``n_blocks``, one embedding leaf per block) and its cache
    is expanded to the block's rollouts, so one backward pass gives every block's mean
    costate ``∂R̃/∂z``."""
    if n % n_blocks:
        raise ValueError(f"n = {n} must be a multiple of n_blocks = {n_blocks}")
    E = _embed(model)
    m, La = n // n_blocks, answer.shape[0]
    z = E[prompt].expand(n_blocks, -1, -1).clone().requires_grad_(True)
    last, cache = _logits(model, z, want_cache=True)
    cache.batch_repeat_interleave(m)
    last = last[:, -1].repeat_interleave(m, 0)  # (n, V)
    relaxed = torch.ones(n, device=last.device)
    gap, ent = torch.zeros(n, device=last.device), torch.zeros(n, device=last.device)
    for s in range(La):
        noise = gumbel(last.shape, generator, last.device)
        logp = torch.log_softmax(last / tau, -1)
        y = torch.softmax((last / tau + noise) / tau_r, -1)
        relaxed = relaxed * y[:, answer[s]]
        soft = y @ E
        with torch.no_grad():
            hard = (last / tau + noise).argmax(-1)
            gap += (E[hard] - soft).norm(dim=-1)
            ent += -(logp.exp() * logp).sum(-1)
        if s < La - 1:
            last, cache = _logits(model, soft[:, None], cache, want_cache=True)
            last = last[:, -1]
    (g,) = torch.autograd.grad(relaxed.sum() / m, z)
    return Relaxed(g, float(relaxed.detach().mean()), float(gap.mean()), float(ent.mean()))


def crossfit_cosine_exact(folds: torch.Tensor, exact: torch.Tensor) -> tuple[float, float, float]:
    """``(ρ, se, raw)``: the noise-corrected cosine of the expectation of K ≥ 2 independent
    fold means with an exact vector, ``ρ = ⟨mean, g⟩ / (‖g‖ sqrt(U))`` with
    ``U = mean_{i≠j} ⟨m_i, m_j⟩`` (an unbiased estimate of ‖E m‖²); its delete-one-fold
    jackknife standard error (NaN for K < 3); and the raw cosine of the pooled mean. ρ is NaN
    when U ≤ 0 (the mean is not resolved from noise)."""
    X = folds.detach().double().cpu().numpy().reshape(folds.shape[0], -1)
    g = exact.detach().double().cpu().numpy().ravel()
    K = X.shape[0]
    if K < 2:
        raise ValueError("need at least 2 folds")
    gn = np.linalg.norm(g)

    def rho(A):
        u = stats.mean_offdiag_inner(A)
        return float(A.mean(0) @ g / (gn * math.sqrt(u))) if u > 0 else float("nan")

    full = rho(X)
    mean = X.mean(0)
    raw = float(mean @ g / (np.linalg.norm(mean) * gn))
    if K < 3 or math.isnan(full):
        return full, float("nan"), raw
    loo = np.array([rho(np.delete(X, k, 0)) for k in range(K)])
    se = float(math.sqrt((K - 1) / K * np.sum((loo - loo.mean()) ** 2))) if not np.isnan(loo).any() \
        else float("nan")
    return full, se, raw


def relative_error_exact(folds: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    """``(r, se)``: the noise-corrected relative error ``‖E m − g‖ / ‖g‖`` of the expectation of
    K ≥ 2 independent fold means against an exact vector ``g``
    (:func:`vgh_lib.common.stats.crossfit_relative_error` with ``g`` as every fold of the first
    process, so its terms are exact) and its delete-one-fold jackknife SE."""
    X = folds.detach().double().cpu().numpy().reshape(folds.shape[0], -1)
    g = exact.detach().double().cpu().numpy().reshape(1, -1)
    return stats.crossfit_relative_error(np.repeat(g, X.shape[0], 0), X)


# ------------------------------------------------------------------- notebook 06 drivers
@dataclass
class Screened:
    example: object        # vgh_lib.lm.tasks.LMExample
    prompt: torch.Tensor   # (Lp,)
    answer: torch.Tensor   # (La,)
    value: float           # V^D at τ = 1: the exact pass@1
    first_token: float     # π(c_1 | x)


def greedy_answer(model, prompt: torch.Tensor, n_new: int) -> torch.Tensor:
    """The model's own greedy continuation (La,): a target the model can reach, for models
    (the tiny random one of the smoke profile) that solve none of the tasks."""
    gen = torch.Generator().manual_seed(0)
    tokens, _ = sample(model, prompt, n_new, 1, 1e-6, gen)
    return tokens[0]


def greedy_targets(model, pairs) -> list:
    """(prompt, answer) pairs with each answer replaced by the model's own greedy answer of the
    same length: a reward that a model which solves no task (a tiny random llama) can earn."""
    return [(p, greedy_answer(model, p, a.shape[0])) for p, a in pairs]


def screen(model, tokenizer, examples, target: str = "task") -> list[Screened]:
    """Exact V^D (τ = 1) of each example's correct answer (``target="task"``) or of the
    model's greedy answer of the same length (``target="greedy"``)."""
    from vgh_lib.lm import tasks as lm_tasks

    out = []
    for ex in examples:
        p, a = (t.to(model.device) for t in lm_tasks.encode(tokenizer, ex))
        if target == "greedy":
            a = greedy_answer(model, p, a.shape[0])
        v, _, probs = exact_value(model, p, a, 1.0, grad=False)
        out.append(Screened(ex, p, a, v, float(probs[0])))
    return out


def pick_prompts(screened: list[Screened], n: int, lo: float, hi: float) -> list[Screened]:
    """The pre-registered selection rule: in suite order, the first prompt of each task whose
    V^D lies in ``[lo, hi]``, then further ones in order, until ``n`` are picked."""
    ok = [s for s in screened if lo <= s.value <= hi]
    first, seen = [], set()
    for s in ok:
        if s.example.task not in seen:
            first.append(s)
            seen.add(s.example.task)
    rest = [s for s in ok if s not in first]
    return (first + rest)[:n]


@dataclass
class PromptResult:
    task: str
    value: float
    answer_len: int
    prompt_len: int
    success_rate: float         # Monte Carlo mean reward of the identity rollouts
    identity: IdentityTest
    attention_share: float
    fidelity: dict              # G -> (mean cosine, share of zero groups)
    relaxed: list               # dicts: tau, tau_r, rho, se, raw, gap, entropy, reward, value
    n_distinct: int
    seconds: float


def analyse_prompt(model, s: Screened, n_rollouts: int, group_size: int, group_sizes,
                   temperatures, relax_temperatures, relax_rollouts: int, relax_blocks: int,
                   seed: int) -> PromptResult:
    """Everything notebook 06 measures on one prompt (see the module docstring)."""
    import time

    t0 = time.time()
    gen = torch.Generator().manual_seed(seed)
    value, grad, _ = exact_value(model, s.prompt, s.answer, 1.0)
    r = rollouts(model, s.prompt, s.answer, n_rollouts, 1.0, gen)
    ident = identity_test(group_costates(r, group_size), grad)
    fid = {G: fidelity(r, grad, G) for G in group_sizes if G <= n_rollouts // 2}
    relaxed = []
    for tau in temperatures:
        v_tau, g_tau, _ = exact_value(model, s.prompt, s.answer, tau)
        for tau_r in relax_temperatures:
            rel = relaxed_costates(model, s.prompt, s.answer, relax_rollouts, tau, tau_r, gen,
                                   relax_blocks)
            rho, se, raw = crossfit_cosine_exact(rel.blocks, g_tau)
            r_err, r_se = relative_error_exact(rel.blocks, g_tau)
            relaxed.append(dict(tau=tau, tau_r=tau_r, rho=rho, se=se, raw=raw, r=r_err, r_se=r_se,
                                gap=rel.gap, entropy=rel.entropy, reward=rel.reward, value=v_tau))
    return PromptResult(s.example.task, value, int(s.answer.shape[0]), int(s.prompt.shape[0]),
                        float(r.rewards.mean()), ident, attention_share(grad), fid, relaxed,
                        int(r.scores.shape[0]), time.time() - t0)
