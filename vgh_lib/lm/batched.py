"""The batched engine of top-``k`` GRPO on a llama-style model: every prompt of a step in one pass.

:mod:`vgh_lib.lm.grpo` works one prompt at a time (the reference path, which the tests keep
as the standard). With a :class:`vgh_lib.lm.prefix.FrozenPrefix` of the model, its functions
call this module instead, which computes the same quantities in a few batched passes:

* **Prompts batched.** The top ``k`` blocks run once per step on all the step's distinct
  prompts, right-padded (causal attention, so a real position never sees a pad), with gradient.
* **A group's answers as a tree.** The G answers of a prompt share their prefixes: at answer
  position ``s`` only the distinct (prompt, ``a_<s``) *nodes* go through the top blocks (with
  gradient) and the output layer, and their log-probabilities are gathered back to the rows.
  ``Σ_i A_i log P(a_i)`` over all rows of the step is one backward pass.
* **The frozen bottom blocks once per node.** A node's bottom-block state (its new token's
  output and its keys and values in each bottom block) depends on the prompt and the answer
  prefix only, so it is computed once, batched with the step's other new nodes, and kept in the
  prefix's cache across steps (:meth:`vgh_lib.lm.prefix.FrozenPrefix.check` still guards it).
* **Teacher-forced values batched.** :func:`exact_values` scores (prompt, answer) pairs in
  padded chunks, the output layer only at answer positions.

The tokens are those of the reference path for the same generator state: the Gumbel noise of
every (prompt, answer position) is drawn first, in the reference's order (:func:`draw_noise`).
Padded, masked attention sums in another order than the reference's unpadded passes, so values
agree to float rounding, not bit for bit; a token whose two best perturbed logits lie within
that rounding could be drawn differently (never seen in the tests, which compare both paths on
a tiny llama in float64 and on SmolLM2 in float32).

The blocks run through :func:`block`, a functional llama decoder block (pre-norm attention with
rotary embeddings and grouped keys and values, then the gated MLP) that calls the model's own
modules and takes past keys and values of any length with an explicit mask; the tests check it
against the model's own forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.profiler import record_function

from vgh_lib.lm import tasks as lm_tasks
from vgh_lib.lm.costates import gumbel
from vgh_lib.tiny import grpo

CHUNK = 64
"""Rows of one padded pass of :func:`exact_values` and of the cache filling."""


# ---------------------------------------------------------------------------- the blocks
def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotary embedding of ``x`` (B, heads, T, head dim) at (B, T, head dim) angles, as
    ``transformers``' ``apply_rotary_pos_emb`` computes it for the query and the key alike."""
    cos, sin = cos[:, None], sin[:, None]
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), -1) * sin


def block(layer, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
          past: tuple[torch.Tensor, torch.Tensor] | None = None, mask: torch.Tensor | None = None,
          queries: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One llama decoder block on ``h`` (B, T, d): ``(output (B, T, d), keys, values)`` of the
    T new positions (B, kv heads, T, head dim; the keys rotated).

    ``past``: keys and values (B, kv heads, P, head dim) that the new positions attend to before
    themselves; ``mask``: (B, 1, T, P + T) booleans, True where a query may attend. Without a
    mask the attention is causal over the new positions and sees all of ``past``.

    ``queries`` (B, Q), without ``past`` or ``mask``: the positions whose output is wanted; the
    output is then (B, Q, d), each attending causally up to its position. Every position still
    gives its keys and values, but only the Q wanted ones pay for the query, the attention and
    the MLP: in the last block of a stack that is all the output that is ever read.
    """
    attn = layer.self_attn
    B, T, _ = h.shape
    x = layer.input_layernorm(h)
    k = attn.k_proj(x).view(B, T, -1, attn.head_dim).transpose(1, 2)
    v = attn.v_proj(x).view(B, T, -1, attn.head_dim).transpose(1, 2)
    if queries is not None:
        if past is not None or mask is not None:
            raise ValueError("queries cannot be combined with past keys or a mask")
        pick = queries[..., None].expand(-1, -1, h.shape[-1])
        h, x = h.gather(1, pick), x.gather(1, pick)
        mask = (torch.arange(T, device=h.device)[None, None] <= queries[..., None])[:, None]
        q_cos, q_sin = (c.gather(1, queries[..., None].expand(-1, -1, c.shape[-1])) for c in (cos, sin))
        q = _rotate(attn.q_proj(x).view(B, queries.shape[1], -1, attn.head_dim).transpose(1, 2),
                    q_cos, q_sin)
    else:
        q = _rotate(attn.q_proj(x).view(B, T, -1, attn.head_dim).transpose(1, 2), cos, sin)
    k = _rotate(k, cos, sin)
    keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
    if mask is None and past is not None and T > 1:
        P = past[0].shape[2]
        mask = torch.ones(T, P + T, dtype=torch.bool, device=h.device).tril(P)[None, None]
    n_rep = attn.num_key_value_groups
    if n_rep > 1:
        keys, values = keys.repeat_interleave(n_rep, 1), values.repeat_interleave(n_rep, 1)
    out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                         is_causal=mask is None and T > 1, scale=attn.scaling)
    h = h + attn.o_proj(out.transpose(1, 2).reshape(B, q.shape[2], -1))
    return h + layer.mlp(layer.post_attention_layernorm(h)), k, v


def run_blocks(model, layers, h: torch.Tensor, positions: torch.Tensor, pasts=None, mask=None,
               queries: torch.Tensor | None = None):
    """``layers`` of ``model`` in turn on ``h`` (B, T, d) at ``positions`` (B, T):
    ``(output, [(keys, values) of each layer])``; ``pasts``: one (keys, values) per layer.
    ``queries`` (B, Q): the only positions whose output is wanted from the last layer
    (:func:`block`), which then returns (B, Q, d)."""
    cos, sin = model.model.rotary_emb(h, position_ids=positions)
    kv = []
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        h, k, v = block(layer, h, cos, sin, None if pasts is None else pasts[i], mask,
                        queries if last else None)
        kv.append((k, v))
    return h, kv


def pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad (L_i, ...) tensors to (B, max L, ...) with zeros; also the lengths (B,)."""
    lengths = torch.tensor([r.shape[0] for r in rows])
    out = rows[0].new_zeros((len(rows), int(lengths.max()), *rows[0].shape[1:]))
    for i, r in enumerate(rows):
        out[i, :r.shape[0]] = r
    return out, lengths


def key_mask(lengths: torch.Tensor, width: int, extra: int, device="cpu") -> torch.Tensor:
    """(B, 1, 1, width + extra) for one query a row: the first ``lengths[b]`` of ``width``
    right-padded keys, then ``extra`` keys that every row sees."""
    pos = torch.arange(width + extra)
    return ((pos[None] < lengths[:, None]) | (pos[None] >= width))[:, None, None].to(device)


def _positions(n: int, width: int, device) -> torch.Tensor:
    return torch.arange(width, device=device).expand(n, width)


def _key(t: torch.Tensor) -> tuple:
    return tuple(t.tolist())


# ------------------------------------------------------------------- the bottom's cache
def _bottom_passes(prefix, sequences: list[torch.Tensor]):
    """The bottom blocks on ``sequences`` from position 0, in padded chunks of ``CHUNK``:
    yields ``(chunk, lengths, outputs, [(keys, values) of each bottom block])``."""
    E = prefix.model.get_input_embeddings().weight.detach()
    bottom = prefix.model.model.layers[:prefix.split]
    for i in range(0, len(sequences), CHUNK):
        chunk = sequences[i:i + CHUNK]
        z, lengths = pad([E[s] for s in chunk])
        with torch.no_grad(), record_function("bottom blocks"):
            h, kv = run_blocks(prefix.model, bottom, z, _positions(len(chunk), z.shape[1], z.device))
        yield chunk, lengths.tolist(), h, kv


def _padded_prompt_kv(states: list, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One bottom block's cached keys and values of several prompts, right-padded:
    (N, kv heads, max Lp, head dim) each."""
    k, _ = pad([st[1][layer][0][0].transpose(0, 1) for st in states])
    v, _ = pad([st[1][layer][1][0].transpose(0, 1) for st in states])
    return k.transpose(1, 2), v.transpose(1, 2)


def prompt_states(prefix, prompts: list[torch.Tensor]) -> list:
    """The cached bottom states ``(h (1, Lp, d), [(keys, values) (1, kv heads, Lp, head dim)
    of each bottom block])`` of each prompt; the missing ones computed in padded batches."""
    missing = list({_key(p): p for p in prompts if _key(p) not in prefix._prompts}.values())
    for chunk, lengths, h, kv in _bottom_passes(prefix, missing):
        for j, (p, L) in enumerate(zip(chunk, lengths)):
            prefix._prompts[_key(p)] = (h[j:j + 1, :L].clone(),
                                        [(k[j:j + 1, :, :L].clone(), v[j:j + 1, :, :L].clone())
                                         for k, v in kv])
    return [prefix._prompts[_key(p)] for p in prompts]


def sequence_states(prefix, sequences: list[torch.Tensor]) -> list[torch.Tensor]:
    """The cached bottom outputs (1, L, d) of each token sequence (a prompt's own states where
    the sequence is a cached prompt); the missing ones computed in padded batches."""
    def cached(key):
        return prefix._sequences.get(key, prefix._prompts.get(key, (None,))[0])

    missing = list({_key(s): s for s in sequences if cached(_key(s)) is None}.values())
    for chunk, lengths, h, _ in _bottom_passes(prefix, missing):
        for j, (s, L) in enumerate(zip(chunk, lengths)):
            prefix._sequences[_key(s)] = h[j:j + 1, :L].clone()
    return [cached(_key(s)) for s in sequences]


def extend_states(prefix, pairs) -> None:
    """Cache the bottom outputs of ``prompt + answer[:-1]`` of each (prompt, answer) pair whose
    prompt's bottom states are cached, from the prompt's keys and values: only the answer's
    tokens run (batched, with a padding mask), not the whole sequence again."""
    todo = {}
    for p, a in pairs:
        key = _key(torch.cat([p, a[:-1]]))
        if (a.shape[0] > 1 and key not in prefix._sequences and key not in todo
                and _key(p) in prefix._prompts):
            todo[key] = (p, a[:-1])
    if not todo:
        return
    E = prefix.model.get_input_embeddings().weight.detach()
    items = list(todo.items())
    for i in range(0, len(items), CHUNK):
        chunk = items[i:i + CHUNK]
        states = [prefix._prompts[_key(p)] for _, (p, _) in chunk]
        lengths = torch.tensor([p.shape[0] for _, (p, _) in chunk])
        z, n_new = pad([E[t] for _, (_, t) in chunk])
        width, T = int(lengths.max()), z.shape[1]
        pasts = [_padded_prompt_kv(states, layer) for layer in range(prefix.split)]
        keys = torch.arange(width + T)
        mask = ((keys[None, None] < lengths[:, None, None])
                | ((keys[None, None] >= width) & (keys[None, None] - width <= torch.arange(T)[None, :, None])))
        positions = lengths[:, None] + torch.arange(T)[None]
        with torch.no_grad(), record_function("bottom blocks"):
            h, _ = run_blocks(prefix.model, prefix.model.model.layers[:prefix.split], z,
                              positions.to(z.device), pasts, mask[:, None].to(z.device))
        for j, (key, (p, t)) in enumerate(chunk):
            prefix._sequences[key] = torch.cat([states[j][0], h[j:j + 1, :t.shape[0]]], 1)


# ------------------------------------------------------------------------- exact values
def exact_values(prefix, pairs, tau: float = 1.0) -> list[float]:
    """``V^D = Π_s π_τ(c_s | x, c_<s)`` of each (prompt, answer) pair by teacher forcing through
    the top blocks (no gradient), in padded chunks: as :meth:`FrozenPrefix.exact_value`."""
    if not pairs:
        return []
    extend_states(prefix, pairs)
    hs = sequence_states(prefix, [torch.cat([p, a[:-1]]) for p, a in pairs])
    top = prefix.model.model.layers[prefix.split:prefix.split + prefix.k]
    values = []
    for i in range(0, len(pairs), CHUNK):
        chunk, h_chunk = pairs[i:i + CHUNK], hs[i:i + CHUNK]
        H, _ = pad([h[0] for h in h_chunk])
        # the answer positions Lp − 1 … Lp + La − 2 of each row, padded with its last one
        width = max(a.shape[0] for _, a in chunk)
        queries = torch.tensor([[p.shape[0] - 1 + min(s, a.shape[0] - 1) for s in range(width)]
                                for p, a in chunk], device=H.device)
        rows = torch.tensor([j for j, (p, a) in enumerate(chunk) for _ in range(a.shape[0])])
        cols = torch.tensor([s for _, a in chunk for s in range(a.shape[0])])
        targets = torch.cat([a for _, a in chunk]).to(H.device)
        with torch.no_grad():
            with record_function("top blocks"):
                out, _ = run_blocks(prefix.model, top, H, _positions(len(chunk), H.shape[1], H.device),
                                    queries=queries)
            with record_function("output layer"):
                logp = torch.log_softmax(prefix._logits(out[rows, cols]) / tau, -1)
                logp = logp.gather(-1, targets[:, None]).squeeze(-1)
            total = torch.zeros(len(chunk), dtype=logp.dtype, device=logp.device)
            total.index_add_(0, rows.to(logp.device), logp)
        values.extend(total.exp().tolist())
    return values


def answer_logprob(prefix, prompt: torch.Tensor, answer: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """``log π_τ(answer | prompt)`` by teacher forcing through the top blocks, a 0-d tensor with
    its graph to their parameters (the log of :func:`exact_values`' value)."""
    extend_states(prefix, [(prompt, answer)])
    h = sequence_states(prefix, [torch.cat([prompt, answer[:-1]])])[0]
    top = prefix.model.model.layers[prefix.split:prefix.split + prefix.k]
    Lp, La = prompt.shape[0], answer.shape[0]
    queries = torch.arange(Lp - 1, Lp - 1 + La, device=h.device)[None]
    out, _ = run_blocks(prefix.model, top, h, _positions(1, h.shape[1], h.device), queries=queries)
    logp = torch.log_softmax(prefix._logits(out[0]) / tau, -1)
    return logp.gather(-1, answer[:, None].to(logp.device)).sum()


# ---------------------------------------------------------------------------- GRPO step
def draw_noise(pairs, group_size: int, vocab: int, generator: torch.Generator,
               device="cpu") -> list[torch.Tensor]:
    """The Gumbel noise of each pair's answer positions, (La, G, V) per pair, drawn in the
    order of the reference path (pair by pair, position by position, as
    :func:`vgh_lib.lm.costates.draw_and_score` draws it)."""
    with record_function("noise"):
        return [torch.stack([gumbel((group_size, vocab), generator, device) for _ in range(a.shape[0])])
                for _, a in pairs]


class _Tree:
    """The distinct (prompt, answer prefix) nodes of a step, depth by depth. Depth 0 holds the
    distinct prompts; a node at depth ``d ≥ 1`` adds the answer token ``a_{d−1}`` at position
    ``Lp + d − 1``. Each depth keeps its nodes' parents and their top blocks' keys and values
    (with gradient), which deeper nodes attend to."""

    def __init__(self, prompt_keys: list[tuple], lengths: torch.Tensor, top_kv):
        self.prompt_keys, self.lengths = prompt_keys, lengths
        self.parents: list[torch.Tensor] = [torch.arange(len(prompt_keys))]
        self.prefixes: list[list[tuple]] = [[()] * len(prompt_keys)]
        self.top_kv = [top_kv]     # per depth: [(keys, values) of each top block]

    def roots(self, depth: int, nodes: torch.Tensor) -> list[torch.Tensor]:
        """Index of each node's ancestor at every depth 0…depth (the node itself last)."""
        chain = [nodes]
        for d in range(depth, 0, -1):
            chain.append(self.parents[d][chain[-1]])
        return chain[::-1]


def _past(levels, chain: list[torch.Tensor], layer: int):
    """Past keys and values of one block for nodes whose ancestors are ``chain`` (depth 0…d−1)."""
    keys = torch.cat([levels[d][layer][0][idx] for d, idx in enumerate(chain)], 2)
    values = torch.cat([levels[d][layer][1][idx] for d, idx in enumerate(chain)], 2)
    return keys, values


def _bottom_nodes(prefix, tree: _Tree, depth: int, parents: torch.Tensor, new_prefixes: list[tuple],
                  tokens: torch.Tensor) -> torch.Tensor:
    """The bottom output (N, 1, d) of each new node at ``depth`` (its token ``tokens``), from
    the prefix's cache, the missing ones computed in one batched pass and cached."""
    cache = prefix._nodes
    chain = tree.roots(depth - 1, parents)
    keys = [(tree.prompt_keys[int(u)], pre) for u, pre in zip(chain[0], new_prefixes)]
    todo = [j for j, key in enumerate(keys) if key not in cache]
    if todo:
        E = prefix.model.get_input_embeddings().weight.detach()
        todo_t = torch.tensor(todo)
        u = chain[0][todo_t]
        prompts = [prefix._prompts[tree.prompt_keys[int(i)]] for i in u]
        lengths = tree.lengths[u]
        width = int(lengths.max())
        pasts = []
        for layer in range(prefix.split):
            k, v = _padded_prompt_kv(prompts, layer)
            # the answer ancestors' cached keys and values, depth 1 … depth − 1
            anc_k = [torch.stack([cache[(keys[j][0], keys[j][1][:d])][1][layer][0] for j in todo])
                     for d in range(1, depth)]
            anc_v = [torch.stack([cache[(keys[j][0], keys[j][1][:d])][1][layer][1] for j in todo])
                     for d in range(1, depth)]
            pasts.append((torch.cat([k, *anc_k], 2), torch.cat([v, *anc_v], 2)))
        mask = key_mask(lengths, width, depth, E.device)
        positions = (lengths + depth - 1)[:, None].to(E.device)
        with torch.no_grad(), record_function("bottom blocks"):
            h, kv = run_blocks(prefix.model, prefix.model.model.layers[:prefix.split],
                               E[tokens[todo_t]][:, None], positions, pasts, mask)
        for n, j in enumerate(todo):
            cache[keys[j]] = (h[n, 0].clone(), [(k[n].clone(), v[n].clone()) for k, v in kv])
    return torch.stack([cache[key][0] for key in keys])[:, None]


def sampled_logprobs(prefix, pairs, group_size: int, tau: float, generator: torch.Generator
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Sample a group for every (prompt, answer) pair of a step and score it, all at once:
    ``(tokens (G, La) per pair, Σ_s log π_τ(a_s | x, a_<s) (G,) per pair, with gradients)``, as
    :meth:`vgh_lib.lm.prefix.FrozenPrefix.sampled_logprobs` called pair after pair with the
    same generator."""
    model = prefix.model
    top = model.model.layers[prefix.split:prefix.split + prefix.k]
    vocab = model.get_output_embeddings().weight.shape[0]
    device = next(model.parameters()).device
    noise = draw_noise(pairs, group_size, vocab, generator, device)

    distinct = {}                               # a prompt drawn twice in a step runs once
    for p, _ in pairs:
        distinct.setdefault(_key(p), p)
    prompt_keys = list(distinct)
    prompt_of = [prompt_keys.index(_key(p)) for p, _ in pairs]
    states = prompt_states(prefix, list(distinct.values()))
    H, lengths = pad([h[0] for h, _ in states])
    with record_function("top blocks"):
        out, top_kv = run_blocks(model, top, H, _positions(len(states), H.shape[1], H.device),
                                 queries=(lengths - 1)[:, None].to(H.device))
    tree = _Tree(prompt_keys, lengths, top_kv)
    with record_function("output layer"):
        logits = prefix._logits(out[:, 0])

    n_new = [a.shape[0] for _, a in pairs]
    node = [torch.full((group_size,), u) for u in prompt_of]       # each row's node at depth s
    tokens = [torch.zeros(group_size, n, dtype=torch.long, device=device) for n in n_new]
    logp = [0.0] * len(pairs)
    for s in range(max(n_new)):
        with record_function("output layer"):
            logq = torch.log_softmax(logits / tau, -1)
        with record_function("sampling"):
            for i in range(len(pairs)):
                if s < n_new[i]:
                    tok = (logits[node[i]].detach() / tau + noise[i][s]).argmax(-1)
                    tokens[i][:, s] = tok
                    logp[i] = logp[i] + logq[node[i], tok]
        live = [i for i in range(len(pairs)) if s + 1 < n_new[i]]
        if not live:
            break
        # the distinct nodes of depth s + 1: (parent at depth s, token a_s)
        children, new_node = {}, {}
        for i in live:
            for g, (par, tok) in enumerate(zip(node[i].tolist(), tokens[i][:, s].tolist())):
                new_node[(i, g)] = children.setdefault((par, tok), len(children))
        parents = torch.tensor([par for par, _ in children])
        new_tokens = torch.tensor([tok for _, tok in children], device=device)
        new_prefixes = [tree.prefixes[s][par] + (tok,) for par, tok in children]
        h = _bottom_nodes(prefix, tree, s + 1, parents, new_prefixes, new_tokens)
        chain = tree.roots(s, parents)
        u = chain[0]
        pasts = [_past(tree.top_kv, chain, layer) for layer in range(prefix.k)]
        with record_function("top blocks"):
            out, kv = run_blocks(model, top, h, (lengths[u] + s)[:, None].to(device), pasts,
                                 key_mask(lengths[u], H.shape[1], s + 1, device))
        tree.parents.append(parents)
        tree.prefixes.append(new_prefixes)
        tree.top_kv.append(kv)
        with record_function("output layer"):
            logits = prefix._logits(out[:, 0])
        for i in live:
            node[i] = torch.tensor([new_node[(i, g)] for g in range(group_size)])

    return tokens, logp


def accumulate_update(prefix, pairs, group_size: int, tau: float, generator: torch.Generator,
                      scale: float) -> float:
    """As :func:`vgh_lib.lm.grpo.accumulate_update` with its ``prefix`` (the same tokens for the
    same generator state, the same update within float rounding), for the whole step at once:
    adds ``scale · Σ_i A_i ∇ log P(a_i)`` to the trainable parameters' ``.grad`` in one backward
    pass; returns the mean reward."""
    tokens, logp = sampled_logprobs(prefix, pairs, group_size, tau, generator)
    rewards = [lm_tasks.reward(a, t) for (_, a), t in zip(pairs, tokens)]
    loss = 0.0
    for r, lp in zip(rewards, logp):
        adv = grpo.group_advantages(r, group_size)
        if not torch.all(adv == 0):
            loss = loss + (adv.to(lp.dtype) * lp).sum()
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        with record_function("backward"):
            (scale * loss).backward()
    return float(torch.cat(rewards).mean())
