"""GRPO on a real (here: tiny random llama) LM, one prompt at a time (vgh_lib.lm.grpo)."""

import numpy as np
import pytest
import torch

from vgh_lib.lm import costates as lm_costates
from vgh_lib.lm import grpo as lm_grpo
from vgh_lib.lm import loading as real_lm
from vgh_lib.lm import tasks as lm_tasks
from vgh_lib.tiny import grpo


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    gguf = real_lm.write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", seed=5)
    model, tok, _ = real_lm.load_model(gguf, root=tmp_path_factory.mktemp("cache"))
    return model.double(), tok


def _pairs(model, tok, n=3, tau=1.0):
    """Prompts of the 'sums' task, each with an answer the tiny model gives probability ≈ 0.3
    (so that groups have unequal rewards)."""
    E = model.get_input_embeddings().weight.detach()
    out = []
    for ex in lm_tasks.suite("train", n, ("sums",)):
        p, _ = lm_tasks.encode(tok, ex)
        p = p[-10:]
        with torch.no_grad():
            pi = torch.softmax(model(inputs_embeds=E[p][None]).logits[0, -1] / tau, -1)
        out.append((p, (pi - 0.3).abs().argmin()[None]))
    return out


def _naive_update(model, params, pairs, G, tau, gen, scale):
    """The same update with every sample's log-probability recomputed from scratch."""
    for p in params:
        p.grad = None
    E = model.get_input_embeddings().weight.detach()
    for prompt, answer in pairs:
        tokens, _ = lm_costates.sample(model, prompt, answer.shape[0], G, tau, gen)
        adv = grpo.group_advantages(lm_tasks.reward(answer, tokens), G)
        total = 0.0
        for i in range(G):
            ids = torch.cat([prompt, tokens[i]])
            logits = model(inputs_embeds=E[ids][None]).logits[0, prompt.shape[0] - 1:-1]
            logp = torch.log_softmax(logits / tau, -1).gather(-1, tokens[i][:, None]).sum()
            total = total + adv[i] * logp
        (scale * total).backward()
    return torch.cat([p.grad.reshape(-1) for p in params])


def test_update_with_a_shared_prompt_cache_equals_a_naive_recomputation(tiny):
    model, tok = tiny
    pairs = _pairs(model, tok)
    params = lm_grpo.train_top_layers(model, 1)
    lm_grpo.accumulate_update(model, pairs, 6, 1.3, torch.Generator().manual_seed(2), 0.1)
    fast = torch.cat([p.grad.reshape(-1) for p in params])
    slow = _naive_update(model, params, pairs, 6, 1.3, torch.Generator().manual_seed(2), 0.1)
    assert fast.abs().max() > 0
    # the model computes its rotary embeddings in float32, so agreement is to float32 precision
    assert (fast - slow).norm() <= 1e-5 * slow.norm()
    model.requires_grad_(True)


def test_only_the_top_layers_train(tiny):
    model, _ = tiny
    params = lm_grpo.train_top_layers(model, 1)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in params}
    # the *top* block and the final norm, nothing from the bottom block
    expected = {id(p) for m in (model.model.layers[-1], model.model.norm) for p in m.parameters()}
    assert trainable == expected
    assert not trainable & {id(p) for p in model.model.layers[0].parameters()}
    assert id(model.get_input_embeddings().weight) not in trainable
    with pytest.raises(ValueError, match="train_layers must be in"):
        lm_grpo.train_top_layers(model, 99)
    model.requires_grad_(True)


def test_grpo_steps_raise_the_exact_value_and_the_flipped_sign_lowers_it(tiny):
    """A few AdamW steps along the update raise Π π(c_s); the opposite sign lowers it."""
    model, tok = tiny
    pairs = _pairs(model, tok)
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def value():
        with torch.no_grad():
            return np.mean([lm_costates.exact_value(model, p, a, 1.0, grad=False)[0] for p, a in pairs])

    results = {}
    for sign in (1.0, -1.0):
        model.load_state_dict(start)
        params = lm_grpo.train_top_layers(model, 1)
        opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)
        gen = torch.Generator().manual_seed(0)
        before = value()
        for _ in range(5):
            opt.zero_grad(set_to_none=True)
            lm_grpo.accumulate_update(model, pairs, 8, 1.0, gen, -sign / 24)
            opt.step()
        results[sign] = (before, value())
    model.load_state_dict(start)
    model.requires_grad_(True)
    (b, up), (_, down) = results[1.0], results[-1.0]
    assert up > b + 0.05 and down < b - 0.05, results


def test_signal_gram_holds_the_inner_products_of_its_batches(tiny):
    """Entry (a, b) is ⟨ĝ_a, ĝ_b⟩ of the batches' updates, drawn in order from one generator,
    each the mean over its prompts of (1/G) Σ_i A_i ∇ log P(a_i)."""
    model, tok = tiny
    pairs = _pairs(model, tok, n=4)
    batches = [pairs[:2], pairs[2:]]
    flags = lm_grpo.grad_flags(model)
    gram = lm_grpo.gram_of_updates(model, batches, 4, 1.5, 1, torch.Generator().manual_seed(4))
    assert lm_grpo.grad_flags(model) == flags  # the caller's flags are restored
    gen = torch.Generator().manual_seed(4)
    params = lm_grpo.train_top_layers(model, 1)
    g = []
    for batch in batches:
        for p in params:
            p.grad = None
        lm_grpo.accumulate_update(model, batch, 4, 1.5, gen, 1.0)
        g.append(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                            for p in params]).double() / 8)  # mean over 2 prompts × 4 samples
    lm_grpo.restore_grad_flags(model, flags)
    expected = torch.stack(g) @ torch.stack(g).T
    assert np.any(gram != 0)
    np.testing.assert_allclose(gram, expected.numpy(), rtol=1e-9, atol=1e-15)
    with pytest.raises(ValueError, match="at least 2 batches"):
        lm_grpo.signal_gram(model, pairs, 1, 2, 4, 1.5, 1, seed=4)
    with pytest.raises(ValueError, match="distinct prompts"):
        lm_grpo.signal_gram(model, pairs, 4, 5, 4, 1.5, 1, seed=4)


def test_signal_gram_draws_each_batch_afresh(tiny):
    """Batches are independent draws of distinct prompts (more batches than the pool allows
    without replacement), and the Gram matrix is that of those batches' updates."""
    model, tok = tiny
    pairs = _pairs(model, tok, n=3)
    gram = lm_grpo.signal_gram(model, pairs, 4, 2, 4, 1.5, 1, seed=9)
    gen = torch.Generator().manual_seed(9)
    batches = [[pairs[i] for i in torch.randperm(3, generator=gen)[:2].tolist()] for _ in range(4)]
    again = lm_grpo.gram_of_updates(model, batches, 4, 1.5, 1, gen)
    np.testing.assert_array_equal(gram, again)
    assert gram.shape == (4, 4) and np.any(np.diag(gram) > 0)


def test_sampled_logprobs_are_the_samples_of_sample_scored_exactly(tiny):
    """One forward pass draws the same tokens as lm_costates.sample and returns their exact
    log-probabilities (against a naive per-sample recomputation)."""
    model, tok = tiny
    E = model.get_input_embeddings().weight.detach()
    prompt = _pairs(model, tok, n=1)[0][0]
    tokens, logp = lm_grpo.sampled_logprobs(model, prompt, 3, 5, 1.3, torch.Generator().manual_seed(6))
    ref, _ = lm_costates.sample(model, prompt, 3, 5, 1.3, torch.Generator().manual_seed(6))
    assert torch.equal(tokens, ref)
    for i in range(5):
        ids = torch.cat([prompt, tokens[i]])
        with torch.no_grad():
            logits = model(inputs_embeds=E[ids][None]).logits[0, prompt.shape[0] - 1:-1]
        naive = torch.log_softmax(logits / 1.3, -1).gather(-1, tokens[i][:, None]).sum()
        assert abs(float(logp[i].detach()) - float(naive)) < 1e-5


def test_train_raises_the_probe_value_restores_flags_and_restored_undoes_it(tiny):
    """lm_grpo.train raises the exact value of its training prompts, the flipped sign lowers
    it, the requires-grad flags come back, and `restored` puts the weights back exactly."""
    model, tok = tiny
    pairs = _pairs(model, tok)
    flags = lm_grpo.grad_flags(model)
    params = lm_grpo.train_top_layers(model, 1)
    lm_grpo.restore_grad_flags(model, flags)
    start = [p.detach().clone() for p in params]
    before = lm_grpo.exact_values(model, pairs).mean()
    cfg = lm_grpo.LMGRPOConfig(steps=6, prompts_per_step=3, group_size=8, lr=3e-3,
                               train_layers=1, probe_every=3, seed=0)
    finals = {}
    for sign in (1.0, -1.0):
        with lm_grpo.restored(params):
            h = lm_grpo.train(model, pairs, pairs, cfg, sign=sign)
            finals[sign] = lm_grpo.exact_values(model, pairs).mean()
            assert h.probe_steps == [0, 3, 6] and len(h.mean_reward) == 6
            assert h.probe_value[0] == pytest.approx(before)
            assert h.probe_value[-1] == pytest.approx(finals[sign])
        assert lm_grpo.grad_flags(model) == flags
        assert all(torch.equal(p, s) for p, s in zip(params, start))
    assert finals[1.0] > before + 0.05 and finals[-1.0] < before - 0.05, (before, finals)
    with pytest.raises(ValueError, match="group_size"):
        lm_grpo.LMGRPOConfig(group_size=1)


def _advantage_gap(p: float, G: int, eps: float = 1e-6) -> float:
    """``E[A_1 | r_1 = 1] − E[A_1 | r_1 = 0]`` for grpo.group_advantages (population std +
    eps), exactly, over the K ~ Bin(G − 1, p) successes of the other group members."""
    from math import comb, sqrt

    gap = 0.0
    for k in range(G):
        weight = comb(G - 1, k) * p ** k * (1 - p) ** (G - 1 - k)
        for r1, sign in ((1, 1.0), (0, -1.0)):
            mean = (k + r1) / G
            gap += sign * weight * (r1 - mean) / (sqrt(mean * (1 - mean)) + eps)
    return gap


def test_expected_update_is_the_closed_form_value_gradient_times_the_advantage_gap(tiny):
    """For one correct answer with probability p, ``E[(1/G) Σ_i A_i ∇log P(a_i)] =
    (E[A|right] − E[A|wrong]) ∇p``, since ``E[∇log P | right] = ∇p/p`` and
    ``E[∇log P | wrong] = −∇p/(1 − p)``. The mean of many accumulate_update draws must match
    it within its Monte Carlo error; a flipped sign, a missing 1/G or wrong advantages miss."""
    from vgh_lib.common import stats

    model, tok = tiny
    G, R = 8, 800
    prompt, answer = _pairs(model, tok, n=1)[0]
    params = lm_grpo.train_top_layers(model, 1)
    E = model.get_input_embeddings().weight.detach()
    p = torch.softmax(model(inputs_embeds=E[prompt][None]).logits[0, -1], -1)[answer[0]]
    grad_p = torch.cat([g.reshape(-1) for g in torch.autograd.grad(p, params)]).double()
    p = float(p.detach())
    expected = _advantage_gap(p, G) * grad_p
    gen = torch.Generator().manual_seed(11)
    draws = []
    for _ in range(R):
        for q in params:
            q.grad = None
        lm_grpo.accumulate_update(model, [(prompt, answer)], G, 1.0, gen, 1.0 / G)
        draws.append(torch.cat([(q.grad if q.grad is not None else torch.zeros_like(q)).reshape(-1)
                                for q in params]).double())
    X = torch.stack(draws)
    model.requires_grad_(True)
    assert 0.1 < p < 0.9
    z = stats.norm_z((X.mean(0) - expected).numpy(), (X.std(0) / np.sqrt(R)).numpy())
    assert z <= 3.0, z
    # the test has power: half the expected update (a missing factor 2) is far outside
    assert stats.norm_z((X.mean(0) - 0.5 * expected).numpy(), (X.std(0) / np.sqrt(R)).numpy()) > 5


def test_output_bias_shifts_the_logits_exactly_and_is_removed(tiny):
    model, tok = tiny
    prompt, answer = _pairs(model, tok, n=1)[0]
    before = lm_grpo.exact_values(model, [(prompt, answer)])[0]
    with torch.no_grad():
        logits0 = model(input_ids=prompt[None]).logits[0, -1].clone()
    with lm_grpo.output_bias(model) as bias:
        with torch.no_grad():
            bias[answer[0]] = 2.0
            logits1 = model(input_ids=prompt[None]).logits[0, -1]
            shifted = lm_grpo.exact_values(model, [(prompt, answer)])[0]
    diff = (logits1 - logits0).double()
    assert diff[answer[0]] == pytest.approx(2.0, abs=1e-5)
    assert diff[torch.arange(diff.numel()) != answer[0]].abs().max() < 1e-6
    # the closed form: p' = p e² / (p e² + 1 − p) for a one-token answer at τ = 1
    assert shifted == pytest.approx(before * np.e**2 / (before * np.e**2 + 1 - before), rel=1e-5)
    with torch.no_grad():
        assert torch.equal(model(input_ids=prompt[None]).logits[0, -1], logits0)  # hook removed


def test_control_arm_trains_only_the_output_bias(tiny):
    model, tok = tiny
    pairs = _pairs(model, tok)
    saved = [p.detach().clone() for p in model.parameters()]
    flags = lm_grpo.grad_flags(model)
    cfg = lm_grpo.LMGRPOConfig(steps=3, prompts_per_step=2, group_size=6, lr=0.1, train_layers=1)
    with lm_grpo.output_bias(model) as bias:
        lm_grpo.train(model, pairs, pairs, cfg, params=[bias])
        assert bias.detach().abs().max() > 0
    assert all(torch.equal(p, s) for p, s in zip(model.parameters(), saved))
    assert lm_grpo.grad_flags(model) == flags
