"""``vgh probe``'s exact signal (``--signal exact``, the default): its S is
``vgh_lib.common.exact_signal.exact_signal`` on the probe's own prompts, its self and alignment
terms are those of the per-prompt gradients' Gram matrix, ``both`` adds the noisy S without
changing either, a bad ``--signal`` is refused before any model loads, and the table and the
JSON carry the exact keys with their seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vgh_lib.common import stats
from vgh_lib.common.exact_signal import advantage_gap, exact_signal
from vgh_lib.driver import cli
from vgh_lib.harness.params import ParameterError
from vgh_lib.tiny.models import load_local
from vgh_lib.tiny.sampling import answer_logprob
from vgh_lib.tools import probe

DIGITS = "0123456789"
CFG = probe.ProbeConfig(samples=5, k=2, batches=3, prompts=9, temperature=1.0, seed=7)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, tiny_models):
    make, perfect = tiny_models
    root = tmp_path_factory.mktemp("probe_exact")
    torch.set_num_threads(1)
    out = {}
    for name, (model, tok) in {"random": make(2), "perfect": perfect()}.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = root / name
    return out


def _task(tmp_path, mixed: bool):
    rows = ([{"prompt": str(i) * (1 + i % 3) + "=", "answer": DIGITS[i % 10]} for i in range(30)]
            if mixed else [{"prompt": f"{i:02d}>", "answer": DIGITS[(i * 7) % 10]} for i in range(30)])
    path = tmp_path / ("mixed.jsonl" if mixed else "equal.jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows, path


def _chosen(rows, cfg, tok):
    """The probe's prompts by hand: the first cfg.prompts of the seeded permutation, encoded as
    the book's task checkpoints were trained (<bos> prompt), one (1, L) tensor each."""
    gen = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(len(rows), generator=gen)[: cfg.prompts].tolist()
    return [(torch.tensor([[tok.bos_token_id] + tok(rows[i]["prompt"])["input_ids"]]),
             torch.tensor([tok(rows[i]["answer"])["input_ids"]])) for i in idx]


@pytest.mark.parametrize("mixed", [False, True], ids=["equal_lengths", "mixed_lengths"])
def test_exact_S_is_common_exact_signal_on_the_probes_prompts(ckpts, tmp_path, mixed):
    rows, task = _task(tmp_path, mixed)
    (r,) = probe.probe([ckpts["random"]], str(task), CFG, progress=False).results
    model, tok = load_local(ckpts["random"])
    chosen = _chosen(rows, CFG, tok)
    params = [p for p in model.parameters() if p.requires_grad]
    N, G = CFG.prompts, CFG.samples

    # common.exact_signal called directly on the same prompts, over all trainable parameters
    direct, _ = exact_signal(lambda i: answer_logprob(model, *chosen[i], CFG.temperature)[0],
                             params, N, G)
    assert direct.S > 0
    assert r.values["S exact"] == pytest.approx(direct.S, rel=1e-5)
    assert r.values["self"] == pytest.approx(direct.self_term, rel=1e-5)
    assert r.values["alignment"] == pytest.approx(direct.alignment, rel=1e-4)

    # the two terms from explicit per-prompt gradients of p and their Gram matrix
    grads, p = [], []
    for prompt, answer in chosen:
        lp = answer_logprob(model, prompt, answer, CFG.temperature)[0]
        g = torch.autograd.grad(lp.exp(), params, allow_unused=True)
        grads.append(torch.cat([(x if x is not None else torch.zeros_like(w)).reshape(-1)
                                for x, w in zip(g, params)]).double())
        p.append(float(lp.detach().exp()))
    a = advantage_gap(np.array(p), G)
    weighted = np.outer(a, a) * stats.gram_matrix(grads) / N ** 2
    self_term, alignment = np.trace(weighted), weighted.sum() - np.trace(weighted)
    assert abs(alignment) > 0.05 * self_term  # the cross terms matter here
    assert r.values["self"] == pytest.approx(self_term, rel=1e-5)
    assert r.values["alignment"] == pytest.approx(alignment, rel=1e-4)
    # S² = self + alignment
    assert r.values["S exact"] ** 2 == pytest.approx(r.values["self"] + r.values["alignment"], rel=1e-10)
    assert r.values["S exact"] ** 2 == pytest.approx(self_term + alignment, rel=1e-5)
    np.testing.assert_allclose(np.exp(r.logp), p, rtol=1e-5)

    # the panel's S and I are the exact ones; no noisy S was measured (no sampling)
    assert r.values["S"] == r.values["S exact"]
    assert r.values["I exact"] == pytest.approx(r.values["S exact"] * r.values["H"], rel=1e-12)
    assert r.values["I"] == r.values["I exact"] and r.values["H"] > 0
    assert "S noisy" not in r.values and r.gram.size == 0 and r.successes.size == 0
    assert np.isnan(r.ses["S exact"]) and np.isnan(r.ses["I"])
    # the costs: the exact pass for S and its parts, the evaluation too for I
    assert r.cost["S exact"] > 0 and r.cost["S"] == r.cost["self"] == r.cost["alignment"] == r.cost["S exact"]
    assert r.cost["I exact"] == pytest.approx(r.cost["S exact"] + r.cost["H"])


def test_both_is_the_exact_and_the_noisy_signal_unchanged(ckpts, tmp_path):
    """--signal both: the exact keys are those of --signal exact, the noisy ones (and the Gram
    matrix, from the same random draws) those of --signal noisy."""
    _, task = _task(tmp_path, False)
    cfg = probe.ProbeConfig(samples=8, k=2, batches=4, prompts=24, seed=2)  # a noisy S above 0
    run = {s: probe.probe([ckpts["random"]], str(task), probe.ProbeConfig(**{**cfg.__dict__, "signal": s}),
                          progress=False).results[0] for s in probe.SIGNALS}
    both, exact, noisy = run["both"], run["exact"], run["noisy"]
    for key in probe.EXACT_KEYS:
        assert both.values[key] == exact.values[key]
    assert both.values["S"] == exact.values["S exact"] and both.values["I"] == exact.values["I exact"]
    assert noisy.gram.shape == (4, 4) and noisy.values["S"] > 0 and noisy.ses["S"] > 0
    np.testing.assert_array_equal(both.gram, noisy.gram)
    np.testing.assert_array_equal(both.successes, noisy.successes)
    assert both.values["S noisy"] == noisy.values["S"] == noisy.values["S noisy"]
    assert both.values["I noisy"] == noisy.values["I"] and both.ses["S noisy"] == noisy.ses["S"]
    assert not set(probe.EXACT_KEYS) & set(noisy.values)
    assert both.values["S"] != both.values["S noisy"]


def test_perfect_model_has_exactly_zero_exact_signal(ckpts, tmp_path):
    task = tmp_path / "sevens.jsonl"
    task.write_text("".join(json.dumps({"prompt": f"{i:02d}+{i:02d}=", "answer": "77"}) + "\n"
                            for i in range(20)))
    (r,) = probe.probe([ckpts["perfect"]], str(task), CFG, progress=False).results
    assert r.values["pass@1"] == 1.0
    assert r.values["S exact"] == 0.0 and r.values["self"] == 0.0 and r.values["alignment"] == 0.0
    assert r.values["I"] == 0.0


def test_bad_signal_is_refused_before_any_model_loads(ckpts, monkeypatch, capsys):
    def refuse(*a, **k):
        raise AssertionError("a model was loaded before --signal was validated")

    monkeypatch.setattr(probe, "load_checkpoint", refuse)
    assert cli.main(["probe", str(ckpts["random"]), "--task", "addition", "--signal", "fast",
                     "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "vgh: error: --signal must be one of exact, noisy, both, got 'fast'"
    with pytest.raises(ParameterError, match="--signal must be one of exact, noisy, both"):
        probe.ProbeConfig(signal="Exact")


def test_cli_default_reports_the_exact_signal_in_table_and_json(ckpts, tmp_path, capsys):
    _, task = _task(tmp_path, False)
    out = tmp_path / "probe.json"
    assert cli.main(["probe", str(ckpts["random"]), "--task", str(task), "--samples", "5",
                     "--k", "2", "--batches", "3", "--prompts", "9", "--seed", "7", "--quiet",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["config"]["signal"] == "exact"
    (mine,) = data["ranking"]
    f = mine["factors"]
    lib = probe.probe([ckpts["random"]], str(task), CFG, progress=False).results[0]
    for key in probe.EXACT_KEYS:
        assert f[key]["value"] == pytest.approx(lib.values[key], rel=1e-12)
        assert f[key]["seconds"] > 0 and f[key]["se"] is None
    assert f["S exact"]["value"] ** 2 == pytest.approx(f["self"]["value"] + f["alignment"]["value"],
                                                       rel=1e-10)
    assert f["S"]["value"] == f["S exact"]["value"] and f["I"]["value"] == f["I exact"]["value"]
    assert f["S noisy"]["value"] is None and mine["gram"] == []
    header = next(line for line in printed.splitlines() if line.startswith("rank"))
    assert header.split()[-2:] == ["self", "alignment"]
    assert f"{lib.values['alignment']:.4g}" in printed and "S exact" in printed
