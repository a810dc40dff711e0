"""The exact signal (vgh_lib.common.exact_signal) against enumeration and against sampled GRPO."""

import itertools

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_and_tokenizer

from vgh_lib.common import stats
from vgh_lib.common.exact_signal import adamw_signal, advantage_gap, exact_signal, expected_update
from vgh_lib.tiny import grpo
from vgh_lib.tiny.sampling import answer_logprob, completion_logprobs


def _enumerated_gap(p: float, G: int, normalise: bool) -> float:
    """E[A_1 | r_1 = 1] − E[A_1 | r_1 = 0] over all 2^G reward vectors, with the library's
    own advantages (tiny.grpo.group_advantages)."""
    cond = {0: 0.0, 1: 0.0}
    for r in itertools.product((0.0, 1.0), repeat=G):
        rewards = torch.tensor(r, dtype=torch.float64)
        adv = grpo.group_advantages(rewards, G) if normalise else rewards - rewards.mean()
        others = np.prod([p if x else 1 - p for x in r[1:]])
        cond[int(r[0])] += others * float(adv[0])
    return cond[1] - cond[0]


@pytest.mark.parametrize("G", [2, 3, 5])
@pytest.mark.parametrize("normalise", [True, False])
def test_advantage_gap_is_the_enumerated_gap(G, normalise):
    ps = np.array([0.0, 0.03, 0.2, 0.5, 0.77, 0.99, 1.0])
    want = [_enumerated_gap(p, G, normalise) for p in ps]
    np.testing.assert_allclose(advantage_gap(ps, G, normalise=normalise), want, rtol=1e-12, atol=1e-12)
    if not normalise:
        np.testing.assert_allclose(advantage_gap(ps, G, normalise=False), 1 - 1 / G)


def test_advantage_gap_rejects_bad_input():
    with pytest.raises(ValueError, match="group_size"):
        advantage_gap(0.5, 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        advantage_gap([0.5, 1.2], 4)
    with pytest.raises(ValueError, match="eps"):
        advantage_gap(0.5, 4, eps=-1)


@pytest.fixture(scope="module")
def tiny():
    """A float64 tiny GPT-2 with 1-token answers (its own greedy answers, so 0 < p < 1)."""
    model, tok = tiny_gpt2_and_tokenizer(seed=3)
    model = model.double()
    torch.manual_seed(0)
    prompts = torch.randint(3, len(tok), (6, 5))
    with torch.no_grad():
        answers = model(input_ids=prompts).logits[:, -1].argmax(-1, keepdim=True)
    return model, tok, prompts, answers


def _flat(grads, params):
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params)]).double()


def _signal(model, prompts, answers, G, tau=1.0):
    params = [p for p in model.parameters() if p.requires_grad]
    return exact_signal(lambda i: answer_logprob(model, prompts[i:i + 1], answers[i:i + 1], tau)[0],
                        params, prompts.shape[0], G)


def test_expected_update_is_the_enumeration_of_every_group(tiny):
    """For one prompt, every group of G = 3 one-token answers (V³ of them) weighted by its
    probability gives the GRPO update's expectation, which must be a_G(p)·∇p."""
    model, tok, prompts, answers = tiny
    params = [p for p in model.parameters() if p.requires_grad]
    G, V = 3, len(tok)
    x, c = prompts[:1], answers[0, 0]
    logp = completion_logprobs(model, x.expand(V, -1), torch.arange(V)[:, None], 1.0)[:, 0]   # (V,)
    probs = logp.detach().exp()
    # coefficient of ∇ log π(a) in the expected update: E[(1/G) Σ_i A_i 1{a_i = a}]
    coef = torch.zeros(V, dtype=torch.float64)
    for group in itertools.product(range(V), repeat=G):
        idx = torch.tensor(group)
        weight = probs[idx].prod()
        adv = grpo.group_advantages((idx == c).double(), G)
        coef.index_add_(0, idx, weight * adv / G)
    want = _flat(torch.autograd.grad((coef * logp).sum(), params, allow_unused=True,
                                     retain_graph=True), params)
    sig, got = exact_signal(lambda i: logp[c], params, 1, G)
    assert 0.05 < float(probs[c]) < 0.95
    # the tiny GPT-2's logits are float32 (tiny.sampling), so probabilities sum to 1 within 1e-7
    assert float((got - want).norm() / want.norm()) < 1e-5
    assert sig.S == pytest.approx(float(want.norm()), rel=1e-5)


def test_self_and_alignment_terms_add_up_and_match_per_prompt_gradients(tiny):
    model, _, prompts, answers = tiny
    params = [p for p in model.parameters() if p.requires_grad]
    sig, g = _signal(model, prompts, answers, 4)
    assert sig.self_term + sig.alignment == pytest.approx(sig.S ** 2, rel=1e-12)
    # the same terms from explicit per-prompt gradients and their Gram matrix
    grads, a = [], []
    for i in range(prompts.shape[0]):
        lp = answer_logprob(model, prompts[i:i + 1], answers[i:i + 1], 1.0)[0]
        grads.append(_flat(torch.autograd.grad(lp.exp(), params, allow_unused=True), params))
        a.append(float(advantage_gap(float(lp.detach().exp()), 4)))
    gram, a, N = stats.gram_matrix(grads), np.array(a), prompts.shape[0]
    weighted = np.outer(a, a) * gram / N ** 2
    assert sig.self_term == pytest.approx(np.trace(weighted), rel=1e-10)
    assert sig.alignment == pytest.approx(weighted.sum() - np.trace(weighted), rel=1e-8, abs=1e-14)
    assert sig.alignment != 0 and sig.n_prompts == N and sig.seconds > 0


def test_expected_update_is_the_mean_of_sampled_grpo_updates(tiny):
    """The library's sampled GRPO update (all prompts, groups of 4), drawn many times: its mean
    along the exact update and the U-statistic of its Gram matrix agree with the exact update
    and S² within their Monte Carlo error (z-scores), and a halved exact update would not."""
    model, tok, prompts, answers = tiny
    G = 4
    sig, g = _signal(model, prompts, answers, G)
    gen = torch.Generator().manual_seed(7)
    draws = [grpo.group_update(model, prompts, answers, G, 1.0, gen)[0] for _ in range(300)]
    u = g / g.norm()
    along = np.array([float(d @ u) for d in draws])
    se = along.std(ddof=1) / np.sqrt(len(along))
    assert abs(along.mean() - float(g.norm())) / se < 4
    assert abs(along.mean() - 0.5 * float(g.norm())) / se > 4
    gram = stats.gram_matrix(draws)
    u_sq, u_se = stats.u_statistic_sq_norm(gram), stats.u_statistic_se(gram)
    assert abs(u_sq - sig.S ** 2) / u_se < 4


def test_adamw_signal_is_the_l1_norm_without_noise_and_shrinks_with_it():
    """Σ_j (E g_j)² / sqrt(E g_j²): with no sampling noise every coordinate gives |g_j| (an
    AdamW step moves each coordinate by about lr·sign(g_j)); noise of the same size as the
    mean shrinks each term by √2."""
    g = np.array([0.5, -2.0, 0.0, 1e-3])
    assert adamw_signal(g, np.tile(g, (5, 1))) == pytest.approx(np.abs(g).sum())
    noisy = np.stack([g + g, g - g])            # E g = g, E g² = 2 g²
    assert adamw_signal(g, noisy) == pytest.approx(np.abs(g).sum() / np.sqrt(2))
    with pytest.raises(ValueError, match="coordinates"):
        adamw_signal(g, np.ones((3, 2)))


def test_one_batched_backward_pass_gives_the_same_expected_update(tiny):
    """expected_update (one pass over all prompts) against exact_signal (one pass a prompt);
    a dropped 1/N or a weight on log p instead of p would fail it."""
    model, _, prompts, answers = tiny
    params = [p for p in model.parameters() if p.requires_grad]
    sig, g = _signal(model, prompts, answers, 4)
    S, flat = expected_update(answer_logprob(model, prompts, answers, 1.0), params, 4)
    assert float((flat - g).norm() / g.norm()) < 1e-6
    assert S == pytest.approx(sig.S, rel=1e-6)
