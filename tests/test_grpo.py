"""GRPO on a causal LM: pass@k, the loss against a naive loop, KV-cache generation."""

import itertools
import math

import numpy as np
import pytest
import torch

from vgh_lib.common import stats
from vgh_lib.tiny import grpo, sampling
from vgh_lib.tiny.models import tiny_gpt2
from vgh_lib.tiny.tasks import Task, build_tokenizer


@pytest.fixture(scope="module")
def model_and_tok():
    tok = build_tokenizer()
    return tiny_gpt2(tok, 2, 32, 4, 16, seed=0).eval(), tok


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 2, 1), (5, 2, 2), (6, 3, 4), (4, 4, 2), (7, 1, 7)])
def test_pass_at_k_against_enumeration(n, c, k):
    """pass@k = P(a uniformly random k-subset of the n samples holds a success)."""
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
    assert stats.pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_rejects_bad_counts():
    with pytest.raises(ValueError):
        stats.pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        stats.pass_at_k(3, 1, 4)


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    a = grpo.group_advantages(r, 4)
    assert a[0].item() == pytest.approx(3 / math.sqrt(3), rel=1e-5)  # (1 − ¼) / sqrt(3/16)
    assert a[1].item() == pytest.approx(-1 / math.sqrt(3), rel=1e-5)
    assert torch.all(a[4:] == 0)


@pytest.mark.parametrize("aggregation", grpo.AGGREGATIONS)
def test_grpo_loss_and_gradient_against_naive_loop(aggregation):
    g = torch.Generator().manual_seed(0)
    B, L = 6, 5
    logp = (torch.randn(B, L, generator=g) * 0.3 - 1).requires_grad_(True)
    logp_old = logp.detach() + torch.randn(B, L, generator=g) * 0.3
    logp_ref = logp.detach() + torch.randn(B, L, generator=g) * 0.2
    adv = torch.randn(B, generator=g)
    mask = (torch.rand(B, L, generator=g) > 0.3).float()
    mask[:, 0] = 1
    loss, _ = grpo.grpo_loss(logp, logp_old, adv, mask, 0.2, aggregation, logp_ref, 0.1)
    (grad,) = torch.autograd.grad(loss, logp)

    # naive: explicit loops over sequences and tokens
    x = logp.detach().clone().requires_grad_(True)
    per_seq, total, count = [], 0.0, 0.0
    for i in range(B):
        seq_sum, seq_n = 0.0, 0.0
        for t in range(L):
            if mask[i, t] == 0:
                continue
            ratio = torch.exp(x[i, t] - logp_old[i, t])
            term = -torch.minimum(ratio * adv[i], torch.clamp(ratio, 0.8, 1.2) * adv[i])
            d = logp_ref[i, t] - x[i, t]
            term = term + 0.1 * (torch.exp(d) - d - 1)
            seq_sum, seq_n = seq_sum + term, seq_n + 1
        per_seq.append(seq_sum / seq_n)
        total, count = total + seq_sum, count + seq_n
    naive = total / count if aggregation == "token" else sum(per_seq) / B
    (naive_grad,) = torch.autograd.grad(naive, x)
    torch.testing.assert_close(loss, naive)
    torch.testing.assert_close(grad, naive_grad)


def test_grpo_loss_rejects_unknown_aggregation():
    z = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        grpo.grpo_loss(z, z, torch.zeros(2), torch.ones(2, 2), 0.2, "batch")


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.5])
def test_kv_cache_generation_equals_recomputation(model_and_tok, temperature):
    model, tok = model_and_tok
    prompts = torch.randint(4, len(tok), (5, 6), generator=torch.Generator().manual_seed(1))
    noise = sampling.gumbel_noise((5, 4, len(tok)), torch.Generator().manual_seed(2))
    cached = sampling.generate(model, prompts, 4, temperature, noise, use_cache=True)
    full = sampling.generate(model, prompts, 4, temperature, noise, use_cache=False)
    assert torch.equal(cached, full)


def test_gumbel_max_samples_the_softmax():
    """argmax(ℓ/τ + g) has the distribution softmax(ℓ/τ)."""
    logits = torch.tensor([1.0, 0.0, -1.0, 0.5])
    tau = 0.8
    g = sampling.gumbel_noise((200_000, 4), torch.Generator().manual_seed(0))
    freq = torch.bincount((logits / tau + g).argmax(-1), minlength=4).float() / 200_000
    torch.testing.assert_close(freq, torch.softmax(logits / tau, 0), atol=4e-3, rtol=0)


def test_completion_logprobs_match_a_manual_forward(model_and_tok):
    model, tok = model_and_tok
    prompts = torch.randint(4, len(tok), (3, 4), generator=torch.Generator().manual_seed(3))
    comp = torch.randint(4, len(tok), (3, 2), generator=torch.Generator().manual_seed(4))
    lp = sampling.completion_logprobs(model, prompts, comp, 0.5)
    for b in range(3):
        for s in range(2):
            ids = torch.cat([prompts[b], comp[b, :s]])[None]
            logits = model(input_ids=ids).logits[0, -1]
            expected = torch.log_softmax(logits / 0.5, -1)[comp[b, s]]
            torch.testing.assert_close(lp[b, s], expected, rtol=1e-5, atol=1e-5)


def test_training_is_deterministic_and_moves_the_policy():
    """1-digit reversal: a random policy succeeds about 1 time in 17, so the groups carry signal."""
    tok = build_tokenizer()
    train, _ = Task("reverse", 1, n_eval=2).split()
    cfg = grpo.GRPOConfig(steps=3, prompts_per_step=8, group_size=8, temperature=2.0, seed=5)
    weights, start = [], None
    for _ in range(2):
        model = tiny_gpt2(tok, 1, 16, 2, 16, seed=1)
        start = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        hist = grpo.train(model, tok, train, cfg)
        weights.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    assert len(hist.mean_reward) == 3 and max(hist.mean_reward) > 0
    assert not torch.equal(weights[0], start)  # GRPO changed the weights


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.5), ("adamw", 1e-2)])
def test_grpo_raises_the_exact_objective_and_the_flipped_sign_lowers_it(optimizer, lr):
    """On 1-digit reversal the exact J (probability of the correct answer, by teacher forcing)
    rises under GRPO; descending the same loss lowers it. A sign error fails this."""
    tok = build_tokenizer()
    train, _ = Task("reverse", 1, n_eval=2).split()
    cfg = grpo.GRPOConfig(steps=8, prompts_per_step=8, group_size=8, lr=lr, optimizer=optimizer,
                          seed=3)
    result = {}
    for sign in (1.0, -1.0):
        model = tiny_gpt2(tok, 1, 16, 2, 16, seed=1).eval()
        j0 = sampling.exact_value(model, tok, train, 1.0)
        hist = grpo.train(model, tok, train, cfg, sign=sign)
        assert hist.probe_value[0] == pytest.approx(j0)
        assert hist.probe_steps == [0, 5, 8]
        result[sign] = (j0, sampling.exact_value(model, tok, train, 1.0))
        assert hist.probe_value[-1] == pytest.approx(result[sign][1])
    (j0, up), (_, down) = result[1.0], result[-1.0]
    assert up > 1.2 * j0, (j0, up)
    assert down < 0.8 * j0, (j0, down)


def test_exact_values_are_the_probability_of_the_answer(model_and_tok):
    """Against a naive product of per-step softmax probabilities, and against sampling."""
    model, tok = model_and_tok
    examples = Task("addition", 1, n_eval=2).split()[0][:3]
    got = sampling.exact_values(model, tok, examples, 1.5)
    for e, v in zip(examples, got):
        ids = [tok.bos_token_id] + tok(e.prompt)["input_ids"]
        prob = 1.0
        for c in tok(e.answer)["input_ids"]:
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            prob *= torch.softmax(logits / 1.5, -1)[c].item()
            ids.append(c)
        assert v == pytest.approx(prob, rel=1e-4)
    # Monte Carlo: the mean exact-match reward of samples at τ converges to the exact value
    ev = sampling.evaluate(model, tok, examples, 20_000, 1, 1.5, torch.Generator().manual_seed(0))
    se = np.sqrt(got * (1 - got) / 20_000)
    assert np.all(np.abs(ev.successes / 20_000 - got) < 4 * se + 1e-12)


def test_history_largest_drop_and_collapse():
    h = grpo.GRPOHistory(probe_steps=[0, 5, 10], probe_value=[0.5, 0.43, 0.6])
    assert h.largest_drop() == pytest.approx(0.07)
    assert h.collapsed(0.05) and not h.collapsed(0.1)
    assert grpo.GRPOHistory(probe_value=[0.5, 0.6]).largest_drop() == 0.0
    with pytest.raises(ValueError, match="optimizer must be one of"):
        grpo.GRPOConfig(optimizer="adam")


def test_evaluate_counts_successes_of_a_perfect_policy():
    """A model whose logits always pick the answer has pass@1 = pass@k = greedy = 1."""
    tok = build_tokenizer()
    task = Task("reverse", 2, n_eval=5)
    _, held = task.split()

    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))
            self.config = type("C", (), {"vocab_size": len(tok)})()

        def forward(self, input_ids, attention_mask=None, cache=None, use_cache=False):
            # the KV cache, by hand: with a cache only the new token is passed in
            input_ids = input_ids if cache is None else torch.cat([cache, input_ids], 1)
            B, L = input_ids.shape
            logits = torch.full((B, L, len(tok)), -1e4)
            for b in range(B):
                text = tok.decode(input_ids[b, 1:])
                prompt = text.split(">")[0]
                done = len(text.split(">")[1]) if ">" in text else 0
                nxt = prompt[::-1][done] if done < len(prompt) else "0"
                logits[b, -1, tok.convert_tokens_to_ids(nxt)] = 1e4
            return type("O", (), {"logits": logits, "cache": input_ids})()

    ev = sampling.evaluate(Oracle(), tok, held, n_samples=4, k=2, temperature=1.0,
                       generator=torch.Generator().manual_seed(0))
    assert ev.pass1 == 1.0 and ev.passk == 1.0 and ev.greedy_accuracy == 1.0
