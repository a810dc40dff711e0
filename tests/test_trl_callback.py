"""vgh_lib.tools.trl.ValueImpactCallback inside TRL's GRPOTrainer, on the CPU.

Two GRPO steps of a tiny local GPT-2 with the callback attached: the factors are logged
through the trainer's logging (``state.log_history`` and the ``logs`` every reporting callback
receives) and are finite; on a model that always answers correctly, H and S are exactly 0. TRL
stays optional: importing vgh_lib (or this integration) never imports it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from vgh_lib.tools import probe

CFG = probe.ProbeConfig(samples=4, k=2, batches=3, prompts=6, seed=3)
KEYS = ("S", "H", "I", "reward_std", "pass@1", "learnability", "non-degenerate", "coverage", "NLL")
EXACT = ("S_exact", "self", "alignment", "I_exact")


def test_importing_vgh_lib_does_not_import_trl():
    code = ("import sys, vgh_lib, vgh_lib.driver.cli, vgh_lib.tools.probe, vgh_lib.integrations, "
            "vgh_lib.tools.trl; print(json.dumps(sorted(m for m in sys.modules "
            "if m == 'trl' or m.startswith('trl.'))))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout) == []


pytest.importorskip("trl", reason="TRL is a test extra: pip install -e '.[test]'")
pytest.importorskip("datasets", reason="TRL needs datasets: pip install -e '.[test]'")


class Reporter:
    """Stands in for a report_to integration: records the logs of every on_log call."""

    def __init__(self):
        from transformers import TrainerCallback

        outer = self

        class _CB(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                outer.logs.append(dict(logs))

        self.logs: list[dict] = []
        self.callback = _CB()


def _train(make_model, held_out, tmp_path, reward):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from vgh_lib.tools.trl import ValueImpactCallback

    torch.set_num_threads(1)
    model, tok = make_model()
    path = tmp_path / "model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    from vgh_lib.tiny.models import load_local

    model, tok = load_local(path)
    args = GRPOConfig(output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False,
                      gradient_checkpointing=False, per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=4, report_to="none",
                      max_steps=2, logging_steps=1, save_strategy="no", seed=0)
    ds = Dataset.from_list([{"prompt": tok.bos_token + p} for p in ("12+34=", "55+01=")])
    reporter = Reporter()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds,
                          processing_class=tok, callbacks=[reporter.callback])
    cb = ValueImpactCallback(held_out, every=1, config=CFG).attach(trainer)
    trainer.train()
    return trainer, cb, reporter


def _rows(answer=None, n=8):
    return [{"prompt": f"{i:02d}>", "answer": answer or "0123456789"[(3 * i) % 10]} for i in range(n)]


def test_two_grpo_steps_log_finite_factors(tmp_path, tiny_models):
    def reward(prompts, completions, completion_ids, **kwargs):
        return [float(sum(c) % 3) for c in completion_ids]

    trainer, cb, reporter = _train(tiny_models[0], _rows(), tmp_path, reward)
    steps = [s for s, _ in cb.history]
    assert steps == [0, 1, 2]  # the start, then every step
    logged = [h for h in trainer.state.log_history if "value_impact/S" in h]
    assert [h["step"] for h in logged] == [1, 2]
    for h in logged:
        for key in KEYS:
            assert math.isfinite(h["value_impact/" + key]), (key, h)
        assert h["value_impact/I"] == pytest.approx(h["value_impact/S"] * h["value_impact/H"])
        # the default probe's S is the exact one, with its parts and their cost
        for key in EXACT:
            assert math.isfinite(h["value_impact/" + key]) and h[f"value_impact/{key}_seconds"] > 0
        assert h["value_impact/S"] == h["value_impact/S_exact"]
        assert h["value_impact/S_exact"] ** 2 == pytest.approx(
            h["value_impact/self"] + h["value_impact/alignment"], rel=1e-10)
        assert "value_impact/S_noisy" not in h
    # the reporting callback, placed before ours by transformers, saw the values too
    seen = [lg for lg in reporter.logs if "value_impact/S" in lg]
    assert len(seen) == 2 and seen[-1]["value_impact/S"] == logged[-1]["value_impact/S"]
    # the logged numbers are the probe's on the policy of that step (last step: final model)
    final = probe.measure(trainer.model.eval(), trainer.processing_class, cb.items, CFG, cb.pool_size)
    assert logged[-1]["value_impact/S"] == pytest.approx(final.values["S"], rel=1e-6)
    assert logged[-1]["value_impact/H"] == final.values["H"]
    assert logged[-1]["value_impact/alignment"] == pytest.approx(final.values["alignment"], rel=1e-6)


def test_perfect_model_logs_exact_zeros(tmp_path, tiny_models):
    def reward(prompts, completions, completion_ids, **kwargs):
        return [1.0 for _ in completion_ids]

    trainer, cb, _ = _train(tiny_models[1], _rows("77"), tmp_path, reward)
    logged = [h for h in trainer.state.log_history if "value_impact/S" in h]
    assert len(logged) == 2
    for h in logged:
        assert h["value_impact/H"] == 0.0 and h["value_impact/S"] == 0.0
        assert h["value_impact/S_exact"] == 0.0 and h["value_impact/alignment"] == 0.0
        assert h["value_impact/I"] == 0.0 and h["value_impact/reward_std"] == 0.0
        assert h["value_impact/pass@1"] == 1.0


def test_refuses_bad_prompt_sets():
    from vgh_lib.harness.params import ParameterError
    from vgh_lib.tools.trl import ValueImpactCallback

    with pytest.raises(ParameterError, match="fewer than --prompts"):
        ValueImpactCallback(_rows(n=4), config=CFG)
    with pytest.raises(ParameterError, match="duplicate"):
        ValueImpactCallback(_rows() + _rows(n=1), config=CFG)
    with pytest.raises(ParameterError, match="empty answer"):
        ValueImpactCallback([{"prompt": "1>", "answer": ""}], config=CFG)


@pytest.mark.parametrize("signal", ["exact", "both"])
def test_callback_reports_the_exact_signal_of_its_prompts(tiny_models, signal):
    """The callback's S_exact, self and alignment are common.exact_signal's on its held-out
    prompts (computed here directly); under "both" it logs the noisy S as well."""
    from vgh_lib.common.exact_signal import exact_signal
    from vgh_lib.tiny.sampling import answer_logprob
    from vgh_lib.tools.trl import ValueImpactCallback

    torch.set_num_threads(1)
    model, tok = tiny_models[0](4)
    cfg = probe.ProbeConfig(**{**CFG.__dict__, "signal": signal})
    cb = ValueImpactCallback(_rows(), config=cfg, prefix="vi/")
    m = cb.measure(model, tok, step=0)
    enc = [(torch.tensor([[tok.bos_token_id] + tok(it.prompt)["input_ids"]]),
            torch.tensor([tok(it.answer)["input_ids"]])) for it in cb.items]
    params = [p for p in model.parameters() if p.requires_grad]
    direct, _ = exact_signal(lambda i: answer_logprob(model, *enc[i], cfg.temperature)[0], params,
                             len(enc), cfg.samples)
    assert direct.S > 0 and direct.alignment != 0
    assert m["vi/S_exact"] == pytest.approx(direct.S, rel=1e-5)
    assert m["vi/self"] == pytest.approx(direct.self_term, rel=1e-5)
    assert m["vi/alignment"] == pytest.approx(direct.alignment, rel=1e-4)
    assert m["vi/S"] == m["vi/S_exact"] and m["vi/I_exact"] == pytest.approx(direct.S * m["vi/H"])
    assert all(m[f"vi/{k}_seconds"] > 0 for k in EXACT)
    assert ("vi/S_noisy" in m) == (signal == "both") and ("vi/I_noisy" in m) == (signal == "both")
