"""Costates inside a transformer: capture, relaxation, gaps, enumeration and the ablation."""

import pytest
import torch

from vgh_lib.tiny import costates as cs
from vgh_lib.tiny import sampling
from vgh_lib.tiny.models import tiny_gpt2
from vgh_lib.tiny.tasks import Task, build_tokenizer


@pytest.fixture(scope="module")
def setup():
    tok = build_tokenizer()
    model = tiny_gpt2(tok, 2, 32, 4, 16, seed=0).eval()
    _, held = Task("addition", 1, n_eval=10).split()
    prompts, answers = sampling.encode_prompts(tok, held[:2], "cpu")
    return model, tok, prompts, answers


def test_captured_costates_equal_autograd_wrt_inputs_embeds(setup):
    model, tok, prompts, answers = setup
    d = cs.discrete_rollouts(model, prompts, answers, 6, 1.0, torch.Generator().manual_seed(0))
    E = cs.embedding_matrix(model).detach()
    full = torch.cat([d.prompts, d.tokens[:, :-1]], 1)
    z = E[full].clone().requires_grad_(True)
    Lp = prompts.shape[1]
    logp = torch.log_softmax(model(inputs_embeds=z).logits[:, Lp - 1:], -1)
    logp = logp.gather(-1, d.tokens[..., None]).squeeze(-1)
    (grad,) = torch.autograd.grad((d.advantages[:, None] * logp).sum(), z)
    torch.testing.assert_close(d.costates["embed"], grad)
    assert set(d.costates) == {"embed", "layer1", "layer2"}


def test_layer_capture_equals_autograd_wrt_hidden_states(setup):
    model, tok, prompts, _ = setup
    z = torch.randn(3, prompts.shape[1], 32, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
    kept = {}
    handle = cs.decoder_layers(model)[0].register_forward_hook(
        lambda m, a, out: kept.__setitem__("h", out[0] if isinstance(out, tuple) else out))
    loss = model(inputs_embeds=z).logits[:, -1, 5].sum()
    handle.remove()
    (expected,) = torch.autograd.grad(loss, kept["h"])
    with cs.CostateCapture(model, prompts.shape[1]) as cap:
        model(inputs_embeds=z).logits[:, -1, 5].sum().backward()
    torch.testing.assert_close(cap.grads["layer1"], expected)
    assert cap.grads["layer1"][:, 0].abs().sum() > 0  # credit reached the first position


def test_relaxed_rollout_reproduces_discrete_tokens_as_tau_r_goes_to_zero(setup):
    model, tok, prompts, answers = setup
    d = cs.discrete_rollouts(model, prompts, answers, 8, 1.0, torch.Generator().manual_seed(1))
    c = cs.relaxed_rollouts(model, d, answers, 1.0, 1e-4)
    assert torch.equal(c.soft.argmax(-1), d.tokens)
    assert c.gap.max() < 1e-3
    # on (near) one-hot tokens the relaxed reward is the exact-match reward
    torch.testing.assert_close(c.relaxed_reward, d.rewards, atol=1e-3, rtol=0)


def test_gap_and_entropy_against_hand_computation(setup):
    model, tok, prompts, answers = setup
    d = cs.discrete_rollouts(model, prompts, answers, 3, 0.7, torch.Generator().manual_seed(2))
    c = cs.relaxed_rollouts(model, d, answers, 0.7, 0.5)
    E = cs.embedding_matrix(model).detach()
    b, s = 1, 0
    with torch.no_grad():
        logits = model(input_ids=d.prompts[b:b + 1]).logits[0, -1]
    pi = torch.softmax(logits / 0.7, -1)
    entropy = -(pi * torch.log(pi)).sum()
    torch.testing.assert_close(d.entropy[b, s], entropy, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(d.mean_gap[b, s], (E[d.tokens[b, s]] - pi @ E).norm(), rtol=1e-4, atol=1e-5)
    y = torch.softmax((logits / 0.7 + d.noise[b, s]) / 0.5, -1)
    torch.testing.assert_close(c.gap[b, s], (E[d.tokens[b, s]] - y @ E).norm(), rtol=1e-4, atol=1e-5)
    # the next position, after the sampled token
    with torch.no_grad():
        logits1 = model(input_ids=torch.cat([d.prompts[b], d.tokens[b, :1]])[None]).logits[0, -1]
    pi1 = torch.softmax(logits1 / 0.7, -1)
    torch.testing.assert_close(d.entropy[b, 1], -(pi1 * torch.log(pi1)).sum(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(d.mean_gap[b, 1], (E[d.tokens[b, 1]] - pi1 @ E).norm(), rtol=1e-4, atol=1e-5)


def test_loo_advantages_by_hand():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    torch.testing.assert_close(cs.loo_advantages(r, 3), torch.tensor([1.0, -0.5, -0.5, 0.0, 0.0, 0.0]))


def test_exact_enumerated_value_matches_monte_carlo(setup):
    model, tok, prompts, answers = setup
    # a sharper policy (low temperature) so that the exact-match probability is not tiny
    v, grad = cs.exact_value_gradient(model, prompts[0], answers[0], 0.3)
    n = 20000
    d = cs.discrete_rollouts(model, prompts[:1], answers[:1], n, 0.3, torch.Generator().manual_seed(3),
                             layers=False)
    mc = d.rewards.mean().item()
    se = max((mc * (1 - mc) / n) ** 0.5, 1e-4)
    assert abs(mc - v) < 4.5 * se
    assert grad.shape == (prompts.shape[1], 32)


def test_exact_value_gradient_against_finite_differences(setup):
    model, tok, prompts, answers = setup
    model64 = tiny_gpt2(tok, 1, 16, 2, 16, seed=4).double().eval()
    v, grad = cs.exact_value_gradient(model64, prompts[0], answers[0], 1.0)
    E = cs.embedding_matrix(model64).detach()
    z0 = E[prompts[0]].clone()
    i, j, h = 2, 3, 1e-5

    def value(z):
        import itertools
        conts = torch.tensor(list(itertools.product(range(E.shape[0]), repeat=answers.shape[1])))
        inputs = torch.cat([z.expand(conts.shape[0], -1, -1), E[conts[:, :-1]]], 1)
        with torch.no_grad():
            logits = model64(inputs_embeds=inputs).logits[:, prompts.shape[1] - 1:]
        logp = torch.log_softmax(logits, -1).gather(-1, conts[..., None]).squeeze(-1).sum(1)
        return float((logp.exp() * (conts == answers[0]).all(1)).sum())

    zp, zm = z0.clone(), z0.clone()
    zp[i, j] += h
    zm[i, j] -= h
    assert grad[i, j].item() == pytest.approx((value(zp) - value(zm)) / (2 * h), rel=1e-4, abs=1e-9)
    assert value(z0) == pytest.approx(v, rel=1e-9)


def test_ablation_removes_exactly_the_cross_position_paths(setup):
    model, tok, prompts, _ = setup
    z = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(6)).requires_grad_(True)
    plain = model(inputs_embeds=z).logits
    with cs.cut_attention(model):
        cut = model(inputs_embeds=z).logits
    torch.testing.assert_close(cut, plain, rtol=1e-5, atol=1e-5)  # forward unchanged
    assert model.config._attn_implementation != cs.CUT_ATTENTION  # restored
    for i in range(6):
        with cs.cut_attention(model):
            (g_cut,) = torch.autograd.grad(model(inputs_embeds=z).logits[:, i].sum(), z)
        (g,) = torch.autograd.grad(model(inputs_embeds=z).logits[:, i].sum(), z)
        others = [j for j in range(6) if j != i]
        assert torch.all(g_cut[:, others] == 0)            # no path between positions
        assert g[:, [j for j in others if j < i]].abs().sum() > 0 if i > 0 else True
        assert g_cut[:, i].abs().sum() > 0                  # the own path remains
        assert torch.all(g[:, i + 1:] == 0)                 # causal: no future positions


def test_decoder_layers_of_unknown_model():
    with pytest.raises(ValueError, match="cannot find the decoder layers"):
        cs.decoder_layers(torch.nn.Linear(2, 2))


def test_capture_with_input_ids_records_the_embedding_costate(setup):
    """In a GRPO step the model is called with input_ids: the capture hooks the embedding."""
    model, tok, prompts, _ = setup
    with cs.CostateCapture(model, prompts.shape[1]) as cap:
        model(input_ids=prompts).logits[:, -1, 3].sum().backward()
    model.zero_grad(set_to_none=True)
    z = cs.embedding_matrix(model).detach()[prompts].clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(inputs_embeds=z).logits[:, -1, 3].sum(), z)
    torch.testing.assert_close(cap.grads["embed"], expected)


def test_teacher_forced_value_gradient_equals_enumeration(setup):
    """V^D = Π_s π(c_s | …) and its whole gradient by one teacher-forced pass, against the
    sum over every continuation (float64 model)."""
    model, tok, prompts, answers = setup
    model64 = tiny_gpt2(tok, 2, 16, 2, 16, seed=7).double().eval()
    values, grads = cs.teacher_forced_value_gradient(model64, prompts, answers, 0.7)
    for p in range(prompts.shape[0]):
        v, g = cs.exact_value_gradient(model64, prompts[p], answers[p], 0.7)
        assert values[p].item() == pytest.approx(v, rel=1e-10)
        torch.testing.assert_close(grads[p], g, rtol=1e-8, atol=1e-14)
    # with the attention cut, only the last prompt position keeps a gradient
    _, cut = cs.teacher_forced_value_gradient(model64, prompts, answers, 0.7, cut=True)
    assert torch.all(cut[:, :-1] == 0) and cut[:, -1].abs().sum() > 0


def test_relaxed_rollout_with_cache_equals_full_recomputation(setup):
    """Process C on its own noise: the cached path (layers=False) gives the same soft tokens,
    costates and gaps as full recomputation (layers=True), and the gap is measured against
    the hard token that the same noise picks at C's own logits."""
    model, tok, prompts, answers = setup
    n = 5
    ids = prompts.repeat_interleave(n, 0)
    V = cs.embedding_matrix(model).shape[0]
    noise = sampling.gumbel_noise((ids.shape[0], answers.shape[1], V), torch.Generator().manual_seed(4))
    a = cs.relaxed_rollouts_from_noise(model, ids, answers, noise, 0.8, 0.4, layers=False)
    b = cs.relaxed_rollouts_from_noise(model, ids, answers, noise, 0.8, 0.4, layers=True)
    torch.testing.assert_close(a.soft, b.soft, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(a.costates["embed"], b.costates["embed"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(a.gen_costates, b.gen_costates, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(a.gap, b.gap, rtol=1e-4, atol=1e-6)
    # first position: hard token = argmax(ℓ/τ + g) at the prompt's logits
    E = cs.embedding_matrix(model).detach()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, -1]
    hard = (logits / 0.8 + noise[:, 0]).argmax(-1)
    torch.testing.assert_close(a.gap[:, 0], (E[hard] - a.soft[:, 0] @ E).norm(dim=-1),
                               rtol=1e-4, atol=1e-5)
    # relaxed_rollouts (shared noise, gap against the discrete tokens) is the same process
    d = cs.discrete_rollouts(model, prompts, answers, n, 0.8, torch.Generator().manual_seed(4),
                             layers=False)
    c = cs.relaxed_rollouts(model, d, answers, 0.8, 0.4, layers=False)
    torch.testing.assert_close(c.costates["embed"], a.costates["embed"], rtol=1e-4, atol=1e-6)


def test_advantage_groups_and_score_only_costates(setup):
    """Advantages within groups of ``group_size``; with ``advantage='one'`` the costate of a
    rollout is its score, and A_i times it is the leave-one-out costate."""
    model, tok, prompts, answers = setup
    gen = lambda: torch.Generator().manual_seed(8)  # noqa: E731
    d = cs.discrete_rollouts(model, prompts, answers, 8, 1.0, gen(), layers=False, group_size=4)
    torch.testing.assert_close(d.advantages, cs.loo_advantages(d.rewards, 4))
    one = cs.discrete_rollouts(model, prompts, answers, 8, 1.0, gen(), layers=False, advantage="one")
    assert torch.equal(one.tokens, d.tokens)
    torch.testing.assert_close(d.advantages[:, None, None] * one.costates["embed"],
                               d.costates["embed"], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="divide"):
        cs.discrete_rollouts(model, prompts, answers, 8, 1.0, gen(), group_size=3)
    with pytest.raises(ValueError, match="advantage"):
        cs.discrete_rollouts(model, prompts, answers, 8, 1.0, gen(), advantage="bogus")
