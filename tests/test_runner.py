"""The runner: cache hits and misses, and failed runs that keep the last good output."""

import json
import shutil

import nbformat
import pytest

from vgh_lib.driver import runner
from vgh_lib.harness import claims as cm

NB = "01_costates_are_value_gradients"


def _fake_execute(calls, fail=False, claim_fails=False):
    """Stand-in for papermill: writes a notebook holding a claims record.

    ``fail``: the notebook errors before recording claims; ``claim_fails``: it records a
    failed identity claim and then raises, as ``ClaimSet.finish`` does.
    """

    def execute(src, dest, parameters):
        calls.append(parameters)
        s = cm.ClaimSet(NB, parameters["profile"], parameters)
        s.add("x", "statement", 3.0 if claim_fails else 1.0, "<=", 2.0)
        rec = json.dumps(s.record())
        out = nbformat.v4.new_output(
            "display_data", data={"application/papermill.record/text/plain": rec},
            metadata={"scrapbook": {"name": cm.CLAIMS_GLUE_KEY}})
        cell = nbformat.v4.new_code_cell("pass", outputs=[] if fail else [out])
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), dest)
        if claim_fails:
            return "cell 1 raised ClaimFailure: identity claim(s) failed"
        return "cell 1 raised RuntimeError: boom" if fail else None

    return execute


def test_cache_hit_and_miss(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "_execute", _fake_execute(calls))
    out = tmp_path / "out"
    first = runner.run_notebook(NB, "smoke", out=out)
    assert first.status == "ran" and len(calls) == 1
    assert (out / f"{NB}.ipynb").exists()
    record = json.loads((out / f"{NB}.claims.json").read_text())
    assert record["cache_key"] and record["notebook"] == NB
    assert record["seconds"] == round(first.seconds, 1) >= 0  # the build-status page's run time
    # nothing changed: cache hit, nothing executed
    second = runner.run_notebook(NB, "smoke", out=out)
    assert second.status == "cached" and len(calls) == 1
    # a parameter changed: cache miss
    third = runner.run_notebook(NB, "smoke", {"seed": "5"}, out=out)
    assert third.status == "ran" and len(calls) == 2 and calls[-1]["seed"] == 5
    # a different profile is a different key too
    assert runner.run_notebook(NB, "default", out=out).status == "ran"
    # --force always runs
    assert runner.run_notebook(NB, "default", out=out, force=True).status == "ran"
    assert len(calls) == 4


def test_cache_key_tracks_notebook_source_and_code(tmp_path, monkeypatch):
    params = {"seed": 0}
    key = runner.cache_key(NB, params)
    assert runner.cache_key(NB, {"seed": 1}) != key
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    src = runner.notebooks_dir() / f"{NB}.ipynb"
    shutil.copy(src, nbdir / src.name)
    monkeypatch.setattr(runner, "notebooks_dir", lambda: nbdir)
    assert runner.cache_key(NB, params) == key  # same source: same key
    nb = nbformat.read(nbdir / src.name, as_version=4)
    nb.cells[0].source += "\nedited"
    nbformat.write(nb, nbdir / src.name)
    assert runner.cache_key(NB, params) != key
    monkeypatch.setattr(runner, "code_fingerprint", lambda: "other code")
    shutil.copy(src, nbdir / src.name)
    assert runner.cache_key(NB, params) != key


def test_failed_run_keeps_last_good_output(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(runner, "_execute", _fake_execute(calls))
    out = tmp_path / "out"
    assert runner.run_notebook(NB, "smoke", out=out).ok
    good_nb = (out / f"{NB}.ipynb").read_bytes()
    good_claims = (out / f"{NB}.claims.json").read_bytes()
    monkeypatch.setattr(runner, "_execute", _fake_execute(calls, fail=True))
    res = runner.run_notebook(NB, "smoke", {"seed": "9"}, out=out)
    assert res.status == "failed" and not res.ok
    assert (out / f"{NB}.ipynb").read_bytes() == good_nb
    assert (out / f"{NB}.claims.json").read_bytes() == good_claims
    assert (out / "failed" / f"{NB}.ipynb").exists()
    assert "RuntimeError: boom" in capsys.readouterr().out
    # no temporary files are left behind
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{NB}.ipynb", f"{NB}.claims.json", "failed"])


@pytest.mark.slow
def test_real_failing_notebook_reports_cell_and_keeps_good_output(tmp_path, monkeypatch):
    """A real papermill failure: a notebook cell raises."""
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    nb = nbformat.read(runner.notebooks_dir() / f"{NB}.ipynb", as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell("raise RuntimeError('deliberate failure')"))
    nbformat.write(nb, nbdir / f"{NB}.ipynb")
    monkeypatch.setattr(runner, "notebooks_dir", lambda: nbdir)
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{NB}.ipynb").write_text("last good notebook")
    (out / f"{NB}.claims.json").write_text("{}")
    logs = []
    res = runner.run_notebook(NB, "smoke", out=out, log=logs.append)
    assert res.status == "failed"
    assert "RuntimeError: deliberate failure" in res.message
    assert "cell 4" in res.message and "raise RuntimeError" in res.message  # index and source
    assert (out / f"{NB}.ipynb").read_text() == "last good notebook"
    assert (out / f"{NB}.claims.json").read_text() == "{}"
    failed = nbformat.read(out / "failed" / f"{NB}.ipynb", as_version=4)
    assert any(o.get("output_type") == "error" for c in failed.cells for o in c.get("outputs", []))


def test_failed_identity_claim_is_kept_and_reported(tmp_path, monkeypatch):
    from vgh_lib.driver.report import render_report

    calls = []
    monkeypatch.setattr(runner, "_execute", _fake_execute(calls))
    out = tmp_path / "out"
    assert runner.run_notebook(NB, "smoke", out=out).ok
    monkeypatch.setattr(runner, "_execute", _fake_execute(calls, claim_fails=True))
    res = runner.run_notebook(NB, "smoke", {"seed": "4"}, out=out)
    assert res.status == "failed"
    failed = json.loads((out / "failed" / f"{NB}.claims.json").read_text())
    assert failed["claims"][0]["passed"] is False
    report = render_report(out)
    assert "## Failed runs" in report and "`x` = 3" in report
    # the next successful run clears the failed record
    monkeypatch.setattr(runner, "_execute", _fake_execute(calls))
    assert runner.run_notebook(NB, "smoke", out=out, force=True).ok
    assert not (out / "failed" / f"{NB}.claims.json").exists()
    assert "## Failed runs" not in render_report(out)


def test_the_injected_parameters_cell_is_removed_from_the_page_and_nothing_else():
    import nbformat

    from vgh_lib.driver.runner import hide_injected_parameters

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("a = 1"), nbformat.v4.new_code_cell("a = 2"),
                nbformat.v4.new_code_cell("print(a)")]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.cells[1].metadata["tags"] = ["injected-parameters"]
    assert hide_injected_parameters(nb) == 1
    assert [c.metadata.get("tags") for c in nb.cells] == [["parameters"], ["injected-parameters", "remove-cell"], []]
    assert hide_injected_parameters(nb) == 0   # idempotent


def test_a_run_starts_its_kernel_without_the_unencrypted_transport_warning(tmp_path, capfd):
    """The kernel's start-up warning went to the terminal once per notebook (issue 23: a quiet
    build); the run still executes the notebook."""
    import nbformat

    from vgh_lib.driver.runner import _execute

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 6 * 7\nprint(x)")]
    src, dest = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    assert _execute(src, dest, {}) is None
    assert nbformat.read(dest, 4).cells[0].outputs[0]["text"] == "42\n"
    assert "without encryption" not in capfd.readouterr().err
