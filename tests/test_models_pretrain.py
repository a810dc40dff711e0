"""Checkpoints, local loading, and the pretraining trajectory (determinism, resumption)."""

import json

import pytest
import torch

from vgh_lib.tiny import models, pretrain
from vgh_lib.tiny.tasks import build_tokenizer

TINY = pretrain.PretrainConfig(n_digits=1, n_layer=1, n_embd=16, n_head=2, pretrain_steps=20,
                               n_checkpoints=4, batch_size=8, n_eval=10, eval_samples=4, k=2)


def _weights(path):
    model, _ = models.load_local(path)
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
    tok = build_tokenizer()
    model = models.tiny_gpt2(tok, 2, 32, 4, 16, seed=3).eval()
    models.save_checkpoint(model, tok, tmp_path / "ckpt", {"step": 7})
    loaded, tok2 = models.load_local(tmp_path / "ckpt")
    ids = torch.randint(4, len(tok), (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)
    assert tok2("12+3=")["input_ids"] == tok("12+3=")["input_ids"]
    assert json.loads((tmp_path / "ckpt" / "metrics.json").read_text()) == {"step": 7}
    assert (tmp_path / "ckpt" / "model.safetensors").exists()


def test_a_users_local_model_directory_loads_through_the_same_path(tmp_path):
    """Any local HF causal-LM directory (here: one saved by transformers itself)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = build_tokenizer()
    user_dir = tmp_path / "my-model"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=16, n_layer=1,
                               n_head=2)).save_pretrained(user_dir)
    tok.save_pretrained(user_dir)
    model, tokenizer = models.load_local(user_dir)
    assert model.config.n_embd == 16 and len(tokenizer) == len(tok)


def test_load_local_refuses_what_it_must_not_load(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        models.load_local(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        models.load_local(tmp_path)


def test_resolve_device():
    assert models.resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device must be one of"):
        models.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            models.resolve_device("cuda")
        assert models.resolve_device("auto").type == "cpu"


def test_checkpoint_steps_and_schedule():
    steps = pretrain.checkpoint_steps(3000, 12)
    assert steps[0] == 0 and steps[-1] == 3000 and steps[1] == 30
    assert steps == sorted(set(steps))
    cfg = pretrain.PretrainConfig(pretrain_steps=1000, warmup_fraction=0.1, lr=1.0)
    lrs = [pretrain.lr_at(s, cfg) for s in range(1000)]
    assert lrs[0] == pytest.approx(0.01) and max(lrs) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))  # no rise after warm-up
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_pretraining_is_deterministic_cached_and_resumable(tmp_path):
    full = pretrain.pretrain(TINY, root=tmp_path / "a", progress=False)
    assert [c.step for c in full] == pretrain.checkpoint_steps(20, 4)
    for c in full:
        m = c.metrics
        assert {"step", "loss", "pass1", "passk", "greedy_accuracy", "headroom"} <= set(m)
        assert 0 <= m["pass1"] <= m["passk"] <= 1
    # same configuration, fresh folder: identical weights
    again = pretrain.pretrain(TINY, root=tmp_path / "b", progress=False)
    assert torch.equal(_weights(full[-1].path), _weights(again[-1].path))
    # interrupted after the second checkpoint, then resumed: identical weights
    mid = pretrain.checkpoint_steps(20, 4)[2]
    part = pretrain.pretrain(TINY, root=tmp_path / "c", progress=False, stop_after=mid)
    assert part[-1].step == mid and len(part) == 3
    resumed = pretrain.pretrain(TINY, root=tmp_path / "c", progress=False)
    assert torch.equal(_weights(full[-1].path), _weights(resumed[-1].path))
    assert resumed[-1].metrics == full[-1].metrics  # the logged loss survives the interruption
    # cached: a second call trains nothing (the files are untouched)
    stamp = (resumed[-1].path / "model.safetensors").stat().st_mtime_ns
    pretrain.pretrain(TINY, root=tmp_path / "c", progress=False)
    assert (resumed[-1].path / "model.safetensors").stat().st_mtime_ns == stamp


def test_trajectory_key_changes_with_configuration():
    import dataclasses

    assert TINY.key() != dataclasses.replace(TINY, seed=1).key()
    assert TINY.key() == pretrain.PretrainConfig(**dataclasses.asdict(TINY)).key()


def test_an_explicit_grid_saves_the_same_models_at_shared_steps(tmp_path):
    """Checkpoints are only saves: the weights at a step do not depend on the grid."""
    import dataclasses

    log = pretrain.pretrain(TINY, root=tmp_path / "log", progress=False)
    shared = log[2].step
    grid = dataclasses.replace(TINY, checkpoint_at=(shared, 7))
    assert grid.steps() == sorted({0, 7, shared, TINY.pretrain_steps})
    explicit = {c.step: c for c in pretrain.pretrain(grid, root=tmp_path / "grid", progress=False)}
    assert torch.equal(_weights(log[2].path), _weights(explicit[shared].path))
    assert torch.equal(_weights(log[-1].path), _weights(explicit[TINY.pretrain_steps].path))
    with pytest.raises(ValueError, match="checkpoint_at steps must be in"):
        dataclasses.replace(TINY, checkpoint_at=(0,))
