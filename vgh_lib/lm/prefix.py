"""The frozen bottom of a real LM, computed once per prompt (a speed-up for top-layer GRPO).

When GRPO trains only the top ``k`` transformer blocks (:func:`vgh_lib.lm.grpo.train_top_layers`),
the bottom ``L − k`` blocks never change, so for a fixed prompt their output and their KV cache
are constants. :class:`FrozenPrefix` computes them once per prompt (and, for the teacher-forced
exact value, once per (prompt, answer)) and keeps them; every later forward pass runs only the
top ``k`` blocks on the prompt, plus the bottom blocks on the few sampled answer tokens. On
SmolLM2-135M with ``k = 2`` that is about 2/30 of a prompt's forward pass
(``benchmarks/bench_lm_prefix.py`` measures the ratio). The batched engine
(:mod:`vgh_lib.lm.batched`) fills the same caches in padded batches, and adds a third: the
bottom states of each (prompt, answer prefix) that a sampled group reaches, so that a bottom
block sees an answer token once per run, not once per sample.

It supports llama-style models (``model.model.layers``, ``norm``, ``rotary_emb``) with SDPA
attention, where a missing attention mask means causal attention for a query of several tokens
and full attention for one new token; :meth:`FrozenPrefix.supported` says whether a model
qualifies, and callers fall back to the plain forward pass otherwise. The tests check every
result against the plain path. The cached states are only valid while the bottom blocks stay
as they were: :meth:`FrozenPrefix.check` compares a fingerprint of them.
"""

from __future__ import annotations

import torch
from torch.autograd.profiler import record_function

from vgh_lib.lm import costates as lm_costates


class FrozenPrefix:
    """Cached bottom-block states of prompts for ``model`` with its top ``k`` blocks trainable."""

    def __init__(self, model, k: int):
        if not self.supported(model):
            raise ValueError(f"{type(model).__name__} with attention "
                             f"{getattr(model.config, '_attn_implementation', '?')!r} is not supported; "
                             "FrozenPrefix needs a llama-style model with SDPA attention")
        inner = model.model
        n = len(inner.layers)
        if not 1 <= k <= n:
            raise ValueError(f"k must be in [1, {n}], got {k}")
        self.model, self.k, self.split = model, k, n - k
        self._prompts: dict = {}
        self._sequences: dict = {}
        self._nodes: dict = {}      # (prompt, answer prefix) -> bottom states (vgh_lib.lm.batched)
        self._fingerprint = self._bottom_fingerprint()

    @staticmethod
    def supported(model) -> bool:
        inner = getattr(model, "model", None)
        return (all(hasattr(inner, a) for a in ("layers", "norm", "rotary_emb"))
                and getattr(model.config, "_attn_implementation", None) == "sdpa")

    # ------------------------------------------------------------------ blocks
    def _blocks(self, hidden, start: int, end: int, cache, first_position: int):
        """Run blocks ``start:end`` on ``hidden`` (B, T, d) at positions ``first_position…``.
        No mask: causal for T > 1 with no cached past in these blocks, full for T = 1."""
        inner = self.model.model
        pos = torch.arange(first_position, first_position + hidden.shape[1],
                           device=hidden.device)[None]
        rope = inner.rotary_emb(hidden, position_ids=pos)
        for layer in inner.layers[start:end]:
            hidden = layer(hidden, attention_mask=None, position_embeddings=rope, position_ids=pos,
                           cache=cache, use_cache=cache is not None)
        return hidden

    def _logits(self, hidden):
        out = self.model.lm_head(self.model.model.norm(hidden))
        return out if out.dtype == torch.float64 else out.float()

    def _bottom_fingerprint(self) -> float:
        with torch.no_grad():
            return float(sum(p.double().sum() for layer in self.model.model.layers[:self.split]
                             for p in layer.parameters()))

    def check(self) -> None:
        """Raise if the bottom blocks changed since the states were cached."""
        if self._bottom_fingerprint() != self._fingerprint:
            raise RuntimeError("the bottom blocks changed after FrozenPrefix cached their states; "
                               "train only the top k blocks, or make a new FrozenPrefix")

    def warm(self, prompts: list[torch.Tensor]) -> None:
        """Compute the bottom states of ``prompts`` now, in padded batches (those of the
        training prompts, before their exact values, let those run only the answer tokens)."""
        from vgh_lib.lm import batched

        batched.prompt_states(self, prompts)

    def clear(self) -> None:
        """Forget every cached state (a worker does between tasks, to bound its memory)."""
        self._prompts.clear()
        self._sequences.clear()
        self._nodes.clear()

    # ------------------------------------------------------------ cached states
    def _prompt(self, prompt: torch.Tensor):
        key = tuple(prompt.tolist())
        if key not in self._prompts:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
            with torch.no_grad():
                z = lm_costates._embed(self.model)[prompt][None]
                h = self._blocks(z, 0, self.split, cache, 0)
            kv = [(cache.layers[i].keys, cache.layers[i].values) for i in range(self.split)]
            self._prompts[key] = (h, kv)
        return self._prompts[key]

    def _sequence(self, ids: torch.Tensor) -> torch.Tensor:
        key = tuple(ids.tolist())
        if key not in self._sequences:
            with torch.no_grad():
                z = lm_costates._embed(self.model)[ids][None]
                self._sequences[key] = self._blocks(z, 0, self.split, None, 0)
        return self._sequences[key]

    # ------------------------------------------------------------------- results
    def exact_value(self, prompt: torch.Tensor, answer: torch.Tensor, tau: float = 1.0) -> float:
        """``V^D = Π_s π_τ(c_s | x, c_<s)`` by teacher forcing (no gradient), as
        :func:`vgh_lib.lm.costates.exact_value`."""
        Lp = prompt.shape[0]
        h = self._prompt(prompt)[0] if answer.shape[0] == 1 else \
            self._sequence(torch.cat([prompt, answer[:-1]]))
        with torch.no_grad():
            top = self._blocks(h, self.split, self.split + self.k, None, 0)
            logp = torch.log_softmax(self._logits(top[0, Lp - 1:]) / tau, -1)
            return float(logp.gather(-1, answer[:, None]).sum().exp())

    def sampled_logprobs(self, prompt: torch.Tensor, n_new: int, group_size: int, tau: float,
                         generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """As :func:`vgh_lib.lm.grpo.sampled_logprobs` (the same tokens for the same generator
        state, their log-probabilities with gradients), from the cached bottom states."""
        from transformers import DynamicCache

        h, kv = self._prompt(prompt)
        Lp = prompt.shape[0]
        cache = DynamicCache(config=self.model.config)
        for i, (k, v) in enumerate(kv):
            cache.update(k, v, i)
        with record_function("top blocks"):
            top = self._blocks(h, self.split, self.split + self.k, cache, 0)
        cache.batch_repeat_interleave(group_size)
        E = lm_costates._embed(self.model)

        def advance(tok, s):
            with torch.no_grad(), record_function("bottom blocks"):
                hb = self._blocks(E[tok][:, None], 0, self.split, cache, Lp + s)
            with record_function("top blocks"):
                hb = self._blocks(hb, self.split, self.split + self.k, cache, Lp + s)
            with record_function("output layer"):
                return self._logits(hb[:, -1])

        with record_function("output layer"):
            first = self._logits(top[:, -1]).expand(group_size, -1)
        return lm_costates.draw_and_score(first, n_new, tau, generator, advance)
