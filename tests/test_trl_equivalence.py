"""vgh_lib.tiny.grpo computes what TRL's GRPOTrainer computes, on the same batch.

TRL generates and scores a batch (2 prompts × 4 completions of a tiny local GPT-2, on the CPU);
both losses are then evaluated on exactly that batch (prompts, completions, completion mask,
rewards, old and reference log-probabilities), and their gradients are compared:

* ``aggregation="sequence"`` ↔ ``loss_type="grpo"``; ``"token"`` ↔ ``"bnpo"`` (and ``"dapo"``,
  which is the same on one process without gradient accumulation), ``scale_rewards="group"``;
* on-policy (ρ = 1), off-policy with the clip binding, and off-policy with the clip disabled;
* with and without the k3 KL term.

The differences we found are pinned down exactly rather than tolerated (the GRPO chapter
documents them): TRL's advantages use the Bessel-corrected group std plus 1e-4, ours the
population std plus ``adv_eps``; and TRL's default KL term is multiplied by the importance ratio
(``use_bias_correction_kl=True``), ours is the plain k3 term (TRL with the flag off).

TRL is a ``test`` extra only: vgh_lib never imports it (checked below).
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("trl", reason="TRL is a test extra: pip install -e '.[test]'")
pytest.importorskip("datasets", reason="TRL needs datasets: pip install -e '.[test]'")

from vgh_lib.tiny import (
    grpo,  # noqa: E402
    sampling,
)

G = 4                       # num_generations
PROMPTS = ["12+34=", "55+01="]
TEMPERATURE = 0.7
REL_TOL = 1e-6


def reward(prompts, completions, completion_ids, **kwargs):
    """A deterministic reward that varies inside each group (so advantages are not zero)."""
    return [float(sum(c) % 7) / 7 for c in completion_ids]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny GPT-2 and its tokenizer saved locally (TRL builds the reference model from a path)."""
    from vgh_lib.tiny.models import tiny_gpt2
    from vgh_lib.tiny.tasks import build_tokenizer

    path = tmp_path_factory.mktemp("tiny_gpt2")
    tok = build_tokenizer()
    tiny_gpt2(tok, 2, 32, 4, 32, seed=0).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def make_batch(checkpoint, tmp_path_factory):
    """``(trainer, model, inputs)``: a TRL trainer and the batch it generated and scored.

    The policy is moved away from the checkpoint (the reference model) so that the KL term
    and its gradient are not zero.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from vgh_lib.tiny.models import load_local

    torch.set_num_threads(1)
    cache = {}

    def make(loss_type: str, beta: float, bias_correction_kl: bool = False):
        key = (loss_type, beta, bias_correction_kl)
        if key in cache:
            return cache[key]
        model, tok = load_local(checkpoint, "cpu")
        args = GRPOConfig(
            output_dir=str(tmp_path_factory.mktemp("trl_out")), use_cpu=True, bf16=False,
            gradient_checkpointing=False, per_device_train_batch_size=4, num_generations=G,
            max_completion_length=4, report_to="none", loss_type=loss_type,
            scale_rewards="group", beta=beta, temperature=TEMPERATURE,
            use_bias_correction_kl=bias_correction_kl, seed=0)
        ds = Dataset.from_list([{"prompt": tok.bos_token + p} for p in PROMPTS])
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds,
                              processing_class=tok)
        model = trainer.model
        with torch.no_grad():
            gen = torch.Generator().manual_seed(1)
            for p in model.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
        model.eval()
        torch.manual_seed(0)
        rows = [{"prompt": tok.bos_token + p} for p in PROMPTS for _ in range(G)]
        inputs = trainer._generate_and_score_completions(rows)
        cache[key] = (trainer, model, tok, inputs)
        return cache[key]

    return make


def _ours_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Our advantages made equal to TRL's: Bessel std = c · population std."""
    c = math.sqrt(G / (G - 1))
    return grpo.group_advantages(rewards, G, eps=1e-4 / c) / c


def _old_logps(cur: torch.Tensor) -> torch.Tensor:
    """Behaviour-policy log-probs away from the current ones, so that ratios leave 1 ± 0.2."""
    return cur + 0.4 * torch.randn(cur.shape, generator=torch.Generator().manual_seed(2))


def test_same_batch_same_prompts_and_advantages(make_batch):
    from vgh_lib.tiny.tasks import Example

    trainer, model, tok, inputs = make_batch("grpo", 0.0)
    ours, _ = sampling.encode_prompts(tok, [Example(p, "") for p in PROMPTS], "cpu")
    assert torch.equal(inputs["prompt_ids"], ours.repeat_interleave(G, 0))
    rewards = torch.tensor(reward(None, None, inputs["completion_ids"].tolist()))
    assert rewards.view(-1, G).std(1).min() > 0, "the test batch needs reward variation in groups"
    trl_adv = inputs["advantages"]
    assert _rel(_ours_advantages(rewards), trl_adv) < REL_TOL
    # the documented difference: same epsilon but population vs Bessel std differ by c
    plain = grpo.group_advantages(rewards, G, eps=1e-4)
    assert _rel(plain, trl_adv) > 0.1


CASES = [  # (clip ε, off-policy old log-probs)
    pytest.param(0.2, False, id="on-policy"),
    pytest.param(0.2, True, id="off-policy-clipped"),
    pytest.param(1e6, True, id="off-policy-unclipped"),
]
LOSSES = [("grpo", "sequence"), ("bnpo", "token"), ("dapo", "token")]


@pytest.mark.parametrize("beta", [0.0, 0.3], ids=["no-kl", "kl"])
@pytest.mark.parametrize("loss_type,aggregation", LOSSES, ids=[lt for lt, _ in LOSSES])
def test_gradient_equals_trl(make_batch, loss_type, aggregation, beta):
    trainer, model, _, inputs = make_batch(loss_type, beta)
    prompts, comp, mask = inputs["prompt_ids"], inputs["completion_ids"], inputs["completion_mask"]
    rewards = torch.tensor(reward(None, None, comp.tolist()))
    adv = _ours_advantages(rewards)
    with torch.no_grad():
        old = _old_logps(sampling.completion_logprobs(model, prompts, comp, TEMPERATURE))
    ref = inputs.get("ref_per_token_logps")
    assert (ref is not None) == (beta > 0)
    for clip, off_policy in [c.values for c in CASES]:
        trainer.epsilon_low = trainer.epsilon_high = clip
        batch = dict(inputs, old_per_token_logps=old) if off_policy else dict(inputs)
        model.zero_grad(set_to_none=True)
        trainer.compute_loss(model, batch).backward()
        g_trl = _grad(model)

        model.zero_grad(set_to_none=True)
        logp = sampling.completion_logprobs(model, prompts, comp, TEMPERATURE)
        loss, stats = grpo.grpo_loss(logp, old if off_policy else logp.detach(), adv, mask, clip,
                                     aggregation, ref, beta)
        loss.backward()
        g_ours = _grad(model)
        where = f"{loss_type}, beta={beta}, clip={clip}, off_policy={off_policy}"
        if off_policy and clip < 1:
            assert stats["clipfrac"] > 0.1, f"the clip must bind in this case ({where})"
        assert g_trl.norm() > 0
        assert _rel(g_ours, g_trl) < REL_TOL, where


def test_trl_default_kl_is_ours_times_the_ratio(make_batch):
    """TRL's default ``use_bias_correction_kl=True`` weights the k3 term by ρ (a gradient
    difference even on-policy); ours is the plain k3 term. Rebuild TRL's from our parts."""
    trainer, model, _, inputs = make_batch("bnpo", 0.3, bias_correction_kl=True)
    prompts, comp, mask = inputs["prompt_ids"], inputs["completion_ids"], inputs["completion_mask"]
    rewards = torch.tensor(reward(None, None, comp.tolist()))
    adv, ref, beta = _ours_advantages(rewards), inputs["ref_per_token_logps"], 0.3
    model.zero_grad(set_to_none=True)
    trainer.compute_loss(model, dict(inputs)).backward()
    g_trl = _grad(model)

    def ours(corrected: bool) -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        logp = sampling.completion_logprobs(model, prompts, comp, TEMPERATURE)
        if corrected:  # our policy term plus β · masked mean of ρ · k3
            loss, _ = grpo.grpo_loss(logp, logp.detach(), adv, mask, 0.2, "token")
            diff, m = ref - logp, mask.float()
            kl = (torch.exp(diff) - diff - 1) * torch.exp(logp - logp.detach())
            loss = loss + beta * (kl * m).sum() / m.sum()
        else:          # our loss as it is
            loss, _ = grpo.grpo_loss(logp, logp.detach(), adv, mask, 0.2, "token", ref, beta)
        loss.backward()
        return _grad(model)

    assert _rel(ours(corrected=True), g_trl) < REL_TOL
    assert _rel(ours(corrected=False), g_trl) > 1e-3  # the difference is real, and documented


def test_vgh_lib_never_imports_trl():
    import ast
    from pathlib import Path

    package = Path(grpo.__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "trl" or n.startswith("trl.") for n in names), \
                f"{path.name} imports TRL, which is only a test dependency"
