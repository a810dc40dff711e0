"""Costates inside a transformer policy (book/theory.md §3, Theorem 2, reconstructed).

* **Empirical costates** λ^D: the gradient of the GRPO surrogate ``Σ_i A_i Σ_s log π(a_s^i)``
  with respect to the input embeddings and every layer's residual stream, at every position.
  :class:`CostateCapture` records them with tensor hooks during the backward pass of the
  loss itself: no extra forward or backward.
* **Relaxed rollout** (process C): the same Gumbel noise as the discrete rollout, soft tokens
  ``y_s = softmax((ℓ_s/τ + g_s)/τ_r)`` fed forward as ``y_sᵀE``, the relaxed reward
  ``R̃ = Π_s y_s[c_s]`` (equal to the exact-match reward on one-hot inputs), and its BPTT
  costates λ^C.
* Per position: the sampling gap ``‖E[a_s] − y_sᵀE‖``, the mean-embedding gap
  ``‖E[a_s] − π_sᵀE‖`` and the entropy ``H(π_s)``.
* **Attention ablation**: :func:`cut_attention` stops the gradient through the keys and
  values of *other* positions, leaving every forward value unchanged.
* The exact discrete value ``V^D(z) = Σ_c π(c | z) R(c)`` by enumerating every continuation,
  and its gradient with respect to the prompt embeddings.

Works on GPT-2 checkpoints and on local Hugging Face causal LMs whose input embeddings and
decoder layers it can find, and that route attention through ``config._attn_implementation``.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass

import torch

from vgh_lib.tiny import grpo, sampling

CUT_ATTENTION = "vgh_cut_attention"


def _at_least_f32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half precision for log-softmax; keep float64 as it is."""
    return x if x.dtype == torch.float64 else x.float()


# ------------------------------------------------------------------ model introspection
def embedding_matrix(model) -> torch.Tensor:
    """The input embedding matrix ``E`` (V, d)."""
    return model.get_input_embeddings().weight


def decoder_layers(model) -> list[torch.nn.Module]:
    """The decoder blocks, for GPT-2 (``transformer.h``), Llama-like (``model.layers``) and
    GPT-NeoX (``gpt_neox.layers``) models."""
    for path in ("transformer.h", "model.layers", "gpt_neox.layers", "model.decoder.layers"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return list(obj)
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")


# ------------------------------------------------------------------------ the capture
class CostateCapture:
    """Record ``∂loss/∂activation`` at the first ``n_positions`` positions during backward.

    Use as a context manager around the forward pass. The embedding costate is recorded from
    the input-embedding module's output when the model is called with ``input_ids``; when it
    is called with ``inputs_embeds``, call :meth:`watch` on that tensor instead. Each decoder layer's output
    (the residual stream after the block) is recorded as ``layer{i}``. Gradients from several
    forward passes over the same prefix (the relaxed rollout) are summed.
    """

    def __init__(self, model, n_positions: int, layers: bool = True):
        self.model, self.n_positions, self.layers = model, n_positions, layers
        self.grads: dict[str, torch.Tensor] = {}
        self._handles = []

    def _store(self, name):
        def hook(grad):
            g = grad[:, : self.n_positions].detach()
            self.grads[name] = self.grads[name] + g if name in self.grads else g.clone()
        return hook

    def watch(self, tensor: torch.Tensor, name: str = "embed") -> torch.Tensor:
        tensor.register_hook(self._store(name))
        return tensor

    def __enter__(self):
        def embed_hook(module, args, output):  # fires when the model is called with input_ids
            if output.requires_grad:
                output.register_hook(self._store("embed"))
        self._handles.append(self.model.get_input_embeddings().register_forward_hook(embed_hook))
        if self.layers:
            for i, layer in enumerate(decoder_layers(self.model)):
                def fwd(module, args, output, name=f"layer{i + 1}"):
                    hidden = output[0] if isinstance(output, tuple) else output
                    if hidden.requires_grad:
                        hidden.register_hook(self._store(name))
                self._handles.append(layer.register_forward_hook(fwd))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()


# ------------------------------------------------------------------ attention ablation
def _cut_attention_forward(module, query, key, value, attention_mask, scaling=None,
                           dropout=0.0, **kwargs):
    """Attention whose gradient reaches each query only through its own key and value.

    Forward values equal eager attention. For query ``i`` the keys and values of positions
    ``j ≠ i`` are detached: ``S = q k̄ᵀ + diag(q·(k − k̄))``, ``o = P v̄ + diag(P)(v − v̄)``.
    """
    scaling = query.size(-1) ** -0.5 if scaling is None else scaling
    k_bar, v_bar = key.detach(), value.detach()
    scores = torch.matmul(query, k_bar.transpose(-1, -2)) * scaling  # (B, H, Lq, Lk)
    Lq, Lk = query.shape[-2], key.shape[-2]
    own = torch.arange(Lq, device=query.device) + (Lk - Lq)  # the key index of each query
    own_k = key[..., own, :] - k_bar[..., own, :]  # zero in value, carries the own-key gradient
    diag = (query * own_k).sum(-1) * scaling  # (B, H, Lq)
    scores = scores + torch.zeros_like(scores).scatter(-1, own[None, None, :, None].expand(
        *scores.shape[:-1], 1), diag[..., None])
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1).type(value.dtype)
    out = torch.matmul(probs, v_bar)
    p_own = probs.gather(-1, own[None, None, :, None].expand(*probs.shape[:-1], 1))  # (B, H, Lq, 1)
    out = out + p_own * (value[..., own, :] - v_bar[..., own, :])
    return out.transpose(1, 2), probs


def _register_cut_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(CUT_ATTENTION, _cut_attention_forward)
    AttentionMaskInterface.register(CUT_ATTENTION, eager_mask)


@contextlib.contextmanager
def cut_attention(model):
    """Within the block, attention carries no gradient between positions (values unchanged)."""
    _register_cut_attention()
    old = model.config._attn_implementation
    model.config._attn_implementation = CUT_ATTENTION
    try:
        yield model
    finally:
        model.config._attn_implementation = old


# ------------------------------------------------------------------ discrete process D
@dataclass
class DiscreteRollouts:
    """Rollouts of process D and their empirical costates (per rollout)."""

    prompts: torch.Tensor        # (B, Lp) prompt ids, prompt-major (n consecutive rollouts per prompt)
    tokens: torch.Tensor         # (B, La) sampled answer tokens
    noise: torch.Tensor          # (B, La, V) Gumbel noise
    rewards: torch.Tensor        # (B,)
    advantages: torch.Tensor     # (B,)
    costates: dict[str, torch.Tensor]   # name -> (B, Lp + La − 1, d): 'embed', 'layer1', ...
    entropy: torch.Tensor        # (B, La) H(π_s) in nats
    mean_gap: torch.Tensor       # (B, La) ‖E[a_s] − π_sᵀE‖


def loo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """``A_i = R_i − mean_{j≠i} R_j`` within each group: the unbiased score-function weight."""
    g = rewards.view(-1, group_size)
    return (g - (g.sum(1, keepdim=True) - g) / (group_size - 1)).view(-1)


def discrete_rollouts(model, prompts: torch.Tensor, answers: torch.Tensor, n_rollouts: int,
                      temperature: float, generator: torch.Generator, advantage: str = "loo",
                      layers: bool = True, cut: bool = False,
                      group_size: int | None = None) -> DiscreteRollouts:
    """Sample ``n_rollouts`` answers per prompt and capture λ^D in the loss's own backward.

    ``advantage`` is ``loo`` (``R_i − mean of the others``, for which ``E[λ^D] = ∇V^D``),
    ``grpo`` (group-normalised) or ``one`` (``A_i = 1``: the costate of rollout ``i`` is then
    its score ``∂_z Σ_s log π(a_s^i)``, from which any advantage can be applied afterwards,
    because rollout ``i``'s costate is ``A_i`` times its score). Advantages are computed
    within consecutive groups of ``group_size`` rollouts of a prompt (default: all
    ``n_rollouts``; it must divide ``n_rollouts``), so that disjoint groups are independent.
    With ``cut`` the attention ablation is active.
    """
    group_size = n_rollouts if group_size is None else group_size
    if group_size < 2 or n_rollouts % group_size:
        raise ValueError(f"group_size {group_size} must be ≥ 2 and divide n_rollouts {n_rollouts}")
    if advantage not in ("loo", "grpo", "one"):
        raise ValueError(f"advantage must be 'loo', 'grpo' or 'one', got {advantage!r}")
    E = embedding_matrix(model)
    P, Lp = prompts.shape
    La = answers.shape[1]
    ids = prompts.repeat_interleave(n_rollouts, 0)  # (B, Lp)
    ans = answers.repeat_interleave(n_rollouts, 0)
    noise = sampling.gumbel_noise((ids.shape[0], La, E.shape[0]), generator, ids.device)
    tokens = sampling.generate(model, ids, La, temperature, noise)
    rewards = (tokens == ans).all(1).to(E.dtype)
    adv = (loo_advantages(rewards, group_size) if advantage == "loo"
           else grpo.group_advantages(rewards, group_size) if advantage == "grpo"
           else torch.ones_like(rewards))
    full = torch.cat([ids, tokens[:, :-1]], 1)  # inputs: prompt and all but the last answer token
    z = E.detach()[full].clone().requires_grad_(True)  # (B, Lp + La − 1, d)
    ctx = cut_attention(model) if cut else contextlib.nullcontext()
    with ctx, CostateCapture(model, full.shape[1], layers) as cap:
        cap.watch(z)
        logits = _at_least_f32(model(inputs_embeds=z).logits[:, Lp - 1:])  # (B, La, V) predicts a_s
        logp_all = torch.log_softmax(logits / temperature, -1)
        logp = logp_all.gather(-1, tokens[..., None]).squeeze(-1)  # (B, La)
        surrogate = (adv[:, None] * logp).sum()  # Σ_i A_i Σ_s log π(a_s^i)
        torch.autograd.grad(surrogate, z)  # fires the capture hooks; no parameter .grad is touched
    with torch.no_grad():
        pi = logp_all.exp()
        entropy = -(pi * logp_all).sum(-1)
        mean_gap = (E.detach()[tokens] - pi @ E.detach()).norm(dim=-1)
    return DiscreteRollouts(ids, tokens, noise, rewards, adv, dict(cap.grads), entropy, mean_gap)


# ------------------------------------------------------------------- relaxed process C
@dataclass
class RelaxedRollouts:
    """Process C under the same noise: soft tokens, relaxed reward, BPTT costates."""

    soft: torch.Tensor            # (B, La, V) y_s
    relaxed_reward: torch.Tensor  # (B,)
    costates: dict[str, torch.Tensor]  # name -> (B, Lp, d) at the prompt positions
    gen_costates: torch.Tensor    # (B, La − 1, d) ∂R̃/∂(y_sᵀE) at the generated inputs
    gap: torch.Tensor             # (B, La) ‖E[a_s] − y_sᵀE‖ against the discrete tokens


def relaxed_rollouts(model, d: DiscreteRollouts, answers: torch.Tensor, temperature: float,
                     relax_temperature: float, layers: bool = True) -> RelaxedRollouts:
    """Run process C with the Gumbel noise of ``d`` and backpropagate ``R̃ = Π_s y_s[c_s]``.

    The gap is measured against the discrete tokens of ``d`` (the same noise). Sharing the
    noise correlates D and C; :func:`relaxed_rollouts_from_noise` runs C on its own noise.
    """
    return relaxed_rollouts_from_noise(model, d.prompts, answers, d.noise, temperature,
                                       relax_temperature, layers, tokens=d.tokens)


def relaxed_rollouts_from_noise(model, prompts: torch.Tensor, answers: torch.Tensor,
                                noise: torch.Tensor, temperature: float,
                                relax_temperature: float, layers: bool = True,
                                tokens: torch.Tensor | None = None) -> RelaxedRollouts:
    """Process C on ``prompts`` (B, Lp), prompt-major with ``B / len(answers)`` rollouts per
    prompt, driven by the Gumbel ``noise`` (B, La, V): soft tokens, ``R̃ = Π_s y_s[c_s]``, and
    its BPTT costates.

    The gap ``‖E[a_s] − y_sᵀE‖`` compares each soft token with the hard token the same noise
    picks: ``tokens`` when given (the discrete rollout under that noise), else
    ``argmax(ℓ_s/τ + g_s)`` at C's own logits.
    """
    E = embedding_matrix(model).detach()
    Lp, La = prompts.shape[1], answers.shape[1]
    n = prompts.shape[0] // answers.shape[0]
    ans = answers.repeat_interleave(n, 0)
    zp = E[prompts].clone().requires_grad_(True)  # (B, Lp, d)
    hard = []
    with CostateCapture(model, Lp, layers) as cap:
        cap.watch(zp)
        z, soft, gen_inputs, cache = zp, [], [], None
        for s in range(La):
            if layers:  # full recomputation: the layer hooks see every position
                logits = _at_least_f32(model(inputs_embeds=z).logits[:, -1])  # (B, V)
            else:  # the key/value cache keeps its graph: the same gradients, less compute
                out = model(inputs_embeds=z if s == 0 else z[:, -1:], cache=cache, use_cache=True)
                logits, cache = _at_least_f32(out.logits[:, -1]), out.cache
            perturbed = logits / temperature + noise[:, s]
            hard.append(perturbed.detach().argmax(-1))
            y = torch.softmax(perturbed / relax_temperature, -1)
            soft.append(y)
            if s < La - 1:
                e = y @ E  # (B, d) the soft token fed forward
                gen_inputs.append(e)
                z = torch.cat([z, e[:, None]], 1)
        y_all = torch.stack(soft, 1)  # (B, La, V)
        relaxed = y_all.gather(-1, ans[..., None]).squeeze(-1).prod(1)  # R̃ = Π_s y_s[c_s]
        grads = torch.autograd.grad(relaxed.sum(), [zp] + gen_inputs)[1:]  # zp: fires the hooks
    gen = torch.stack(grads, 1) if grads else zp.new_zeros(zp.shape[0], 0, zp.shape[2])
    ref = torch.stack(hard, 1) if tokens is None else tokens
    gap = (E[ref] - y_all.detach() @ E).norm(dim=-1)
    return RelaxedRollouts(y_all.detach(), relaxed.detach(), dict(cap.grads), gen, gap)


# --------------------------------------------------------------- exact discrete value
def exact_value_gradient(model, prompt: torch.Tensor, answer: torch.Tensor, temperature: float,
                         chunk: int = 4096) -> tuple[float, torch.Tensor]:
    """``V^D = Σ_c π(c | z) R(c)`` over every continuation ``c`` (vocabulary^La), and
    ``∇_z V^D`` at the prompt embeddings ``z`` (Lp, d). ``R`` is the exact-match reward."""
    E = embedding_matrix(model).detach()
    V, La = E.shape[0], answer.shape[0]
    conts = torch.tensor(list(itertools.product(range(V), repeat=La)), device=prompt.device)
    z = E[prompt].clone().requires_grad_(True)  # (Lp, d)
    value, grad = 0.0, torch.zeros_like(z)
    for i in range(0, conts.shape[0], chunk):  # one graph per chunk: memory stays bounded
        c = conts[i:i + chunk]
        inputs = torch.cat([z.expand(c.shape[0], -1, -1), E[c[:, :-1]]], 1)
        logits = _at_least_f32(model(inputs_embeds=inputs).logits[:, prompt.shape[0] - 1:])
        logp = torch.log_softmax(logits / temperature, -1).gather(-1, c[..., None]).squeeze(-1).sum(1)
        reward = (c == answer).all(1).to(logp.dtype)
        part = (logp.exp() * reward).sum()
        (g,) = torch.autograd.grad(part, z)
        value, grad = value + part.item(), grad + g
    return value, grad


def teacher_forced_value_gradient(model, prompts: torch.Tensor, answers: torch.Tensor,
                                  temperature: float, cut: bool = False
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``V^D = Π_s π(c_s | x, c_<s)`` of an exact-match reward for every prompt, and
    ``∇_z V^D`` at the prompt embeddings, by one teacher-forced forward and one backward
    (book/theory.md §4b): values (P,), gradients (P, Lp, d). Rows do not interact, so one
    backward of ``Σ_p V_p`` gives every prompt's gradient.

    With ``cut`` the attention ablation is active: the gradient then holds only the paths
    that never cross positions (at the prompt, only the last position's own prediction).
    """
    E = embedding_matrix(model).detach()
    Lp = prompts.shape[1]
    z = E[prompts].clone().requires_grad_(True)  # (P, Lp, d)
    inputs = torch.cat([z, E[answers[:, :-1]]], 1)
    ctx = cut_attention(model) if cut else contextlib.nullcontext()
    with ctx:
        logits = _at_least_f32(model(inputs_embeds=inputs).logits[:, Lp - 1:])  # (P, La, V)
    logp = torch.log_softmax(logits / temperature, -1).gather(-1, answers[..., None]).squeeze(-1)
    values = logp.sum(1).exp()
    (grad,) = torch.autograd.grad(values.sum(), z)
    return values.detach(), grad
