"""The cached frozen bottom blocks (vgh_lib.lm.prefix) against the plain forward pass."""

import numpy as np
import pytest
import torch
from conftest import tiny_llama_float64

from vgh_lib.lm import costates as lm_costates
from vgh_lib.lm import grpo as lm_grpo
from vgh_lib.lm import tasks as lm_tasks
from vgh_lib.lm.prefix import FrozenPrefix


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-block tiny llama in float64, so that differences are not float32 rounding."""
    return tiny_llama_float64(tmp_path_factory)


def _pairs(tok, n=4):
    """Prompts with answers of 1 to 3 tokens."""
    out = []
    for i, (p, a) in enumerate(lm_grpo.encode(tok, lm_tasks.suite("train", n, ("sums",)))):
        out.append((p[-12:], torch.cat([a, a, a])[: 1 + i % 3]))
    return out


@pytest.mark.parametrize("k", [1, 2])
def test_exact_value_and_sampled_logprobs_equal_the_plain_path(tiny, k):
    model, tok = tiny
    params = lm_grpo.train_top_layers(model, k)
    prefix = FrozenPrefix(model, k)
    for p, a in _pairs(tok):
        assert prefix.exact_value(p, a, 1.3) == pytest.approx(
            lm_grpo.exact_values(model, [(p, a)], 1.3)[0], rel=1e-6)
        fast = prefix.sampled_logprobs(p, a.shape[0], 5, 1.2, torch.Generator().manual_seed(3))
        slow = lm_grpo.sampled_logprobs(model, p, a.shape[0], 5, 1.2, torch.Generator().manual_seed(3))
        assert torch.equal(fast[0], slow[0])    # the same Gumbel-max tokens
        np.testing.assert_allclose(fast[1].detach(), slow[1].detach(), rtol=1e-6)
        g_fast = torch.autograd.grad(fast[1].sum(), params)
        g_slow = torch.autograd.grad(slow[1].sum(), params)
        for x, y in zip(g_fast, g_slow):
            assert (x - y).norm() <= 1e-6 * (y.norm() + 1e-12)
    model.requires_grad_(True)


def test_training_with_the_prefix_equals_training_without(tiny):
    """A few GRPO steps of the top block give the same weights and probe curve either way."""
    model, tok = tiny
    # the model's own greedy answers: likely enough that groups have unequal rewards
    pairs = [(p, lm_costates.greedy_answer(model, p, a.shape[0])) for p, a in _pairs(tok)]
    assert 0.05 < lm_grpo.exact_values(model, pairs).mean() < 0.95
    cfg = lm_grpo.LMGRPOConfig(steps=3, prompts_per_step=2, group_size=6, lr=1e-2, train_layers=1,
                               probe_every=1, seed=4)
    params = lm_grpo.train_top_layers(model, 1)
    prefix = FrozenPrefix(model, 1)
    out = {}
    for name, pre in (("fast", prefix), ("slow", None)):
        with lm_grpo.restored(params):
            h = lm_grpo.train(model, pairs, pairs, cfg, prefix=pre)
            out[name] = (h.probe_value, [p.detach().clone() for p in params])
    np.testing.assert_allclose(out["fast"][0], out["slow"][0], rtol=1e-6)
    assert out["fast"][0][-1] != out["fast"][0][0]   # the weights did move
    for x, y in zip(out["fast"][1], out["slow"][1]):
        assert (x - y).norm() <= 1e-6 * y.norm()
    model.requires_grad_(True)


def test_a_changed_bottom_block_is_detected_and_bad_input_rejected(tiny):
    model, tok = tiny
    prefix = FrozenPrefix(model, 1)
    prefix.check()
    bottom = model.model.layers[0].mlp.down_proj.weight
    with torch.no_grad():
        bottom.mul_(1.01)
    try:
        with pytest.raises(RuntimeError, match="bottom blocks changed"):
            prefix.check()
    finally:
        with torch.no_grad():
            bottom.div_(1.01)
    with pytest.raises(ValueError, match="k must be in"):
        FrozenPrefix(model, 4)
    cfg = lm_grpo.LMGRPOConfig(steps=1, train_layers=2)
    with pytest.raises(ValueError, match="prefix must belong"):
        lm_grpo.train(model, _pairs(tok), _pairs(tok), cfg, prefix=prefix)


def test_unsupported_models_are_named():
    from conftest import tiny_gpt2_and_tokenizer

    gpt2, _ = tiny_gpt2_and_tokenizer()
    assert not FrozenPrefix.supported(gpt2)
    with pytest.raises(ValueError, match="not supported"):
        FrozenPrefix(gpt2, 1)
