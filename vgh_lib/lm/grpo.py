"""The GRPO update and the signal ``S`` for a real pretrained language model: the per-prompt path,
and the entry points that hand a whole step to the batched engine (:mod:`vgh_lib.lm.batched`)
when a :class:`vgh_lib.lm.prefix.FrozenPrefix` is given.

book/theory.md §4 on a real LM, where the axis is *tasks*, not checkpoints (notebook
``08_real_lm_impact``, driven by :mod:`vgh_lib.experiments.real_lm_impact`). The prompts of a real LM differ in
length, so the reference path here works per prompt, on (prompt ids, answer ids) pairs
(:func:`encode`), and one forward pass of the prompt both samples its G answers and scores
them (:func:`sampled_logprobs`, an expanded KV cache); the batched engine pads them. Only
the top ``train_layers`` transformer blocks and the final norm take part
(:func:`train_top_layers`), which a CPU budget needs; the signal ``S`` is the norm of the
expected update of those same parameters (:func:`signal_gram`, whose Gram matrix
:func:`vgh_lib.common.impact.signal` turns into ``S``). A training step is ``accumulate_update`` with
``scale = −1/T`` followed by an optimizer step (:func:`train`, AdamW, with an exact probe
value every few steps); :func:`restored` puts the trained parameters back afterwards.
:func:`exact_signal` is ``S`` without sampling, for an exact-match reward.

With one update per batch the PPO ratio is 1 at the current parameters and clipping is
inactive, so the GRPO loss's gradient is ``−(1/T) Σ_i A_i ∇ log P(a_i | x)`` with
``A_i = (r_i − mean)/(std + eps)`` over the prompt's group and ``T`` the batch's number of
answer tokens (the ``token`` aggregation of :func:`vgh_lib.tiny.grpo.grpo_loss`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch.autograd.profiler import record_function

from vgh_lib.common import stats
from vgh_lib.lm import batched as lm_batched
from vgh_lib.lm import costates as lm_costates
from vgh_lib.lm import tasks as lm_tasks
from vgh_lib.lm.tasks import LMExample
from vgh_lib.tiny import grpo


def _blocks(model):
    """The transformer blocks and the final norm of a llama- or GPT-2-style causal LM."""
    inner = getattr(model, "model", None) or getattr(model, "transformer", None)
    blocks = getattr(inner, "layers", None) or getattr(inner, "h", None)
    norm = getattr(inner, "norm", None) or getattr(inner, "ln_f", None)
    if blocks is None or norm is None:
        raise ValueError(f"cannot find the transformer blocks of {type(model).__name__}")
    return blocks, norm


def top_parameters(model, k: int) -> list[torch.nn.Parameter]:
    """The parameters of the top ``k`` blocks and the final norm (flags unchanged)."""
    blocks, norm = _blocks(model)
    if not 1 <= k <= len(blocks):
        raise ValueError(f"train_layers must be in [1, {len(blocks)}], got {k}")
    return [p for module in (*blocks[-k:], norm) for p in module.parameters()]


def train_top_layers(model, k: int) -> list[torch.nn.Parameter]:
    """Freeze everything but the top ``k`` blocks and the final norm; return those parameters.
    (:func:`restore_grad_flags` undoes it with the flags saved by :func:`grad_flags`.)"""
    params = top_parameters(model, k)
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    return params


def grad_flags(model) -> list[bool]:
    return [p.requires_grad for p in model.parameters()]


def restore_grad_flags(model, flags: list[bool]) -> None:
    for p, flag in zip(model.parameters(), flags, strict=True):
        p.requires_grad_(flag)


def encode(tokenizer, examples: list[LMExample], device="cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(prompt ids, answer ids)`` of each example (:func:`vgh_lib.lm.tasks.encode`) on ``device``."""
    return [tuple(t.to(device) for t in lm_tasks.encode(tokenizer, e)) for e in examples]


def sampled_logprobs(model, prompt: torch.Tensor, n_new: int, group_size: int, tau: float,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample a group and score it in the same forward pass: ``(tokens (G, n_new), Σ_s log
    π_τ(a_s | x, a_<s) (G,), with gradients)``. The prompt runs once (batch 1, with gradient)
    and its KV cache is expanded to the G rows; each step's tokens are the Gumbel-max draws of
    :func:`vgh_lib.lm.costates.sample` (the same generator state gives the same tokens), and
    their log-probabilities come from the logits that drew them, so a GRPO step costs one
    forward pass per prompt instead of two."""
    E = lm_costates._embed(model)
    last, cache = lm_costates._logits(model, E[prompt][None], want_cache=True)
    cache.batch_repeat_interleave(group_size)

    def advance(tok, s):
        nonlocal cache
        logits, cache = lm_costates._logits(model, E[tok][:, None], cache, want_cache=True)
        return logits[:, -1]

    return lm_costates.draw_and_score(last[:, -1].expand(group_size, -1), n_new, tau, generator,
                                      advance)


def accumulate_update(model, pairs, group_size: int, tau: float, generator: torch.Generator,
                      scale: float, prefix=None, batched: bool = True) -> float:
    """Sample a group per (prompt, answer) pair and add ``scale · Σ_i A_i ∇ log P(a_i)`` to the
    ``.grad`` of the trainable parameters (:func:`sampled_logprobs`: one forward pass per
    prompt). Groups with equal rewards carry no update and cost no backward pass. With a
    :class:`vgh_lib.lm.prefix.FrozenPrefix` of the model, the frozen bottom blocks come from
    its cache, and the whole step runs batched in :func:`vgh_lib.lm.batched.accumulate_update`
    (the same tokens and update within float rounding, faster); ``batched=False`` keeps the
    per-prompt path, the reference that the tests compare with. Returns the mean reward."""
    if prefix is not None and batched:
        return lm_batched.accumulate_update(prefix, pairs, group_size, tau, generator, scale)
    rewards_all = []
    for prompt, answer in pairs:
        if prefix is not None:
            tokens, logp = prefix.sampled_logprobs(prompt, answer.shape[0], group_size, tau, generator)
        else:
            tokens, logp = sampled_logprobs(model, prompt, answer.shape[0], group_size, tau, generator)
        rewards = lm_tasks.reward(answer, tokens)
        rewards_all.append(rewards)
        adv = grpo.group_advantages(rewards, group_size)
        if torch.all(adv == 0) or not logp.requires_grad:
            continue
        with record_function("backward"):
            (scale * (adv * logp).sum()).backward()
    return float(torch.cat(rewards_all).mean())


def signal_gram(model, pairs, n_batches: int, n_prompts: int, group_size: int, tau: float,
                train_layers: int, seed: int, prefix=None, batched: bool = True) -> np.ndarray:
    """The Gram matrix of ``n_batches`` independent estimates of the expected GRPO update of
    the trainable parameters over the prompts ``pairs`` ((prompt ids, answer ids) of a task),
    each from ``n_prompts`` distinct prompts drawn afresh for every batch (so the batches are
    i.i.d. and the U-statistic of their Gram matrix is unbiased for ``‖E ĝ‖²``; unlike
    :func:`vgh_lib.tiny.grpo.signal_gram`, whose batches are disjoint, a task's few prompts may
    recur across batches); each
    estimate is the mean over its prompts of ``(1/G) Σ_i A_i ∇ log P(a_i)``."""
    if n_batches < 2:
        raise ValueError(f"the signal needs at least 2 batches, got {n_batches}")
    if not 1 <= n_prompts <= len(pairs):
        raise ValueError(f"a batch of {n_prompts} distinct prompts needs at least that many "
                         f"prompts, got {len(pairs)}")
    gen = torch.Generator().manual_seed(seed)
    return gram_of_updates(model, draw_batches(pairs, n_batches, n_prompts, gen), group_size, tau,
                           train_layers, gen, prefix, batched)


def draw_batches(pairs, n_batches: int, n_prompts: int, generator: torch.Generator) -> list[list]:
    """``n_batches`` batches of ``n_prompts`` distinct prompts of ``pairs``, each drawn afresh."""
    return [[pairs[i] for i in torch.randperm(len(pairs), generator=generator)[:n_prompts].tolist()]
            for _ in range(n_batches)]


def gram_of_updates(model, batches, group_size: int, tau: float, train_layers: int,
                    generator: torch.Generator, prefix=None, batched: bool = True) -> np.ndarray:
    """The Gram matrix of the updates of ``batches`` (each a list of (prompt, answer) id
    pairs), drawn in order from ``generator``; the caller's requires-grad flags are restored."""
    return stats.gram_matrix(update_estimates(model, batches, group_size, tau, train_layers,
                                              generator, prefix, batched))


def update_estimates(model, batches, group_size: int, tau: float, train_layers: int,
                     generator: torch.Generator, prefix=None, batched: bool = True) -> list[torch.Tensor]:
    """One sampled GRPO update of the top ``train_layers`` blocks per batch (each a list of
    (prompt, answer) id pairs; the mean over its prompts of ``(1/G) Σ_i A_i ∇ log P(a_i)``),
    flattened, float64, drawn in order from ``generator``; the caller's requires-grad flags are
    restored. Their Gram matrix is :func:`gram_of_updates`; their mean square, the second moment
    of the AdamW signal (:func:`vgh_lib.common.exact_signal.adamw_signal`)."""
    flags = grad_flags(model)
    params = train_top_layers(model, train_layers)
    estimates = []
    for pairs in batches:
        for p in params:
            p.grad = None
        accumulate_update(model, pairs, group_size, tau, generator,
                          1.0 / (len(pairs) * group_size), prefix, batched)
        estimates.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                    for p in params]).double())
    restore_grad_flags(model, flags)
    for p in params:
        p.grad = None
    return estimates


def exact_signal(model, pairs, group_size: int, train_layers: int, tau: float = 1.0, prefix=None):
    """The exact signal of the top ``train_layers`` blocks over ``pairs``
    (:func:`vgh_lib.common.exact_signal.exact_signal`): ``(ExactSignal, g)``, where ``g`` is the
    expected update that :func:`signal_gram`'s batches estimate, ``(1/N) Σ_x a_G(p_x) ∇p_x``
    (one teacher-forced backward pass a prompt, no sampling). The caller's requires-grad flags
    are restored."""
    from vgh_lib.common.exact_signal import exact_signal as exact

    E = lm_costates._embed(model)

    def logp(i):
        p, a = pairs[i]
        if prefix is not None:
            return lm_batched.answer_logprob(prefix, p, a, tau)
        logits = lm_costates._logits(model, E[torch.cat([p, a[:-1]])][None])[0, p.shape[0] - 1:]
        return torch.log_softmax(logits / tau, -1).gather(-1, a[:, None]).sum()

    flags = grad_flags(model)
    params = train_top_layers(model, train_layers)
    try:
        return exact(logp, params, len(pairs), group_size)
    finally:
        restore_grad_flags(model, flags)


# ------------------------------------------------------------------------------ training
def exact_values(model, pairs, tau: float = 1.0, prefix=None, batched: bool = True) -> np.ndarray:
    """The exact value ``V^D`` (probability of the correct answer) of each (prompt, answer)
    pair, by teacher forcing: (P,). For an exact-match reward it is the prompt's expected
    pass@1. ``prefix``: a :class:`vgh_lib.lm.prefix.FrozenPrefix` of the model (faster; in
    padded batches by :func:`vgh_lib.lm.batched.exact_values` unless ``batched=False``).

    One value per prompt from :func:`vgh_lib.lm.costates.exact_value` (which also gives its
    gradient at the prompt embeddings). :func:`vgh_lib.tiny.sampling.exact_values` is the
    tiny models' version: it batches prompts of one length through token ids, which the real
    LM's few-shot prompts (of many lengths) do not allow."""
    if prefix is not None and batched:
        return np.array(lm_batched.exact_values(prefix, pairs, tau))
    if prefix is not None:
        return np.array([prefix.exact_value(p, a, tau) for p, a in pairs])
    with torch.no_grad():
        return np.array([lm_costates.exact_value(model, p, a, tau, grad=False)[0] for p, a in pairs])


@dataclass(frozen=True)
class LMGRPOConfig:
    """GRPO on a real LM: ``steps`` AdamW steps (no weight decay) of the top ``train_layers``
    blocks and the final norm, each on ``prompts_per_step`` training prompts drawn with
    replacement and ``group_size`` samples per prompt, token aggregation, one update per batch
    (so the PPO ratio is 1 and clipping never acts); the exact value of the probe prompts is
    recorded every ``probe_every`` steps."""

    steps: int = 30
    prompts_per_step: int = 8
    group_size: int = 8
    lr: float = 1e-5
    train_layers: int = 2
    temperature: float = 1.0
    probe_every: int = 5
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "prompts_per_step", "group_size", "train_layers", "probe_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be ≥ 2, got {self.group_size}")
        if not (self.lr > 0 and self.temperature > 0):
            raise ValueError(f"lr and temperature must be > 0, got {self.lr}, {self.temperature}")


@contextmanager
def output_bias(model):
    """A trainable bias on the output logits, zero at entry, added by a forward hook on the
    output layer while the block runs: the answer-prior control arm of issue 20. Trained alone
    (``train(..., params=[bias])``), it can shift the prior over answer tokens but cannot
    compute anything from the prompt. Yields the bias (vocabulary size, float32)."""
    head = model.get_output_embeddings()
    weight = head.weight
    bias = torch.nn.Parameter(torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device))
    handle = head.register_forward_hook(lambda module, inputs, out: out + bias.to(out.dtype))
    try:
        yield bias
    finally:
        handle.remove()


@contextmanager
def restored(params: list[torch.nn.Parameter]):
    """Put ``params`` back to their values on entry when the block ends (also on error)."""
    saved = [p.detach().clone() for p in params]
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
                p.grad = None


def train(model, train_pairs, probe_pairs, cfg: LMGRPOConfig, progress: bool = False,
          sign: float = 1.0, prefix=None, params: list | None = None,
          batched: bool = True) -> grpo.GRPOHistory:
    """GRPO in place on the top ``cfg.train_layers`` blocks of ``model`` (or on ``params``
    alone, e.g. the :func:`output_bias` of the control arm), on the (prompt ids, answer ids)
    ``train_pairs``; the history records the mean exact value of ``probe_pairs`` (the model's
    requires-grad flags are restored afterwards). ``sign = −1`` descends
    the objective instead: only for tests that check that the real sign raises the probe value.
    ``prefix``: a :class:`vgh_lib.lm.prefix.FrozenPrefix` of ``model`` with
    ``k = cfg.train_layers``, whose cached bottom states make every step faster (checked
    afterwards to be still valid); ``batched=False`` runs it one prompt at a time (the
    reference path of :func:`accumulate_update`)."""
    from tqdm.auto import tqdm

    if prefix is not None and (prefix.model is not model or prefix.k != cfg.train_layers):
        raise ValueError(f"the prefix must belong to this model with k = train_layers = "
                         f"{cfg.train_layers}, got k = {prefix.k}")
    gen = torch.Generator().manual_seed(cfg.seed)
    flags = grad_flags(model)
    if params is None:
        params = train_top_layers(model, cfg.train_layers)
    else:
        model.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    history = grpo.GRPOHistory()

    def record_probe(step):
        history.probe_steps.append(step)
        with record_function("probe"):
            values = exact_values(model, probe_pairs, cfg.temperature, prefix, batched)
        history.probe_value.append(float(values.mean()))

    try:
        record_probe(0)
        for step in tqdm(range(cfg.steps), desc="GRPO", disable=not progress, mininterval=5):
            idx = torch.randint(len(train_pairs), (cfg.prompts_per_step,), generator=gen).tolist()
            pairs = [train_pairs[i] for i in idx]
            n_tokens = cfg.group_size * sum(a.shape[0] for _, a in pairs)
            opt.zero_grad(set_to_none=True)
            reward = accumulate_update(model, pairs, cfg.group_size, cfg.temperature, gen,
                                       -sign / n_tokens, prefix, batched)
            with record_function("optimizer"):
                opt.step()
            history.mean_reward.append(reward)
            if (step + 1) % cfg.probe_every == 0 or step + 1 == cfg.steps:
                record_probe(step + 1)
    finally:
        restore_grad_flags(model, flags)
        for p in params:
            p.grad = None
    if prefix is not None:
        prefix.check()
    return history
