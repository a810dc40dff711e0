"""Every notebook runs in the smoke profile, and the book builds strictly from those outputs."""

import json
import re

import nbformat
import papermill as pm
import pytest

from vgh_lib import registry, runner
from vgh_lib.report import render_report


@pytest.mark.parametrize("name", list(registry.NOTEBOOKS))
def test_parameters_cell_matches_dataclass_defaults(name):
    """The notebook's parameters cell holds exactly the dataclass fields, with their defaults."""
    path = runner.notebooks_dir() / f"{name}.ipynb"
    found = pm.inspect_notebook(str(path))
    defaults = registry.get(name).params().as_dict()
    assert set(found) == set(defaults)
    for key, info in found.items():
        assert eval(info["default"]) == defaults[key], key  # noqa: S307 - literals only


@pytest.mark.parametrize("name", list(registry.NOTEBOOKS))
def test_source_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(runner.notebooks_dir() / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


@pytest.mark.parametrize("name", list(registry.NOTEBOOKS))
def test_notebook_has_one_title_and_a_glued_keys_table(name):
    """One H1 (the page title), so the book's table of contents stays readable."""
    nb = nbformat.read(runner.notebooks_dir() / f"{name}.ipynb", as_version=4)
    lines = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()]
    titles = [line for line in lines if line.startswith("# ")]
    assert len(titles) == 1 and titles[0].startswith("# Notebook:"), titles
    assert "## Glued keys" in lines


@pytest.mark.slow
def test_smoke_notebooks_and_strict_book_build(book_root, capsys, monkeypatch, tmp_path):
    """`vgh book --profile smoke` on a copy of the book: all notebooks, then -W -n."""
    from vgh_lib import cli

    monkeypatch.setenv("VGH_CACHE", str(tmp_path / "cache"))  # kernels inherit it

    code = cli.main(["book", "--profile", "smoke", "--jobs", "2", "--root", str(book_root)])
    out = capsys.readouterr().out
    assert code == 0, out
    html = book_root / "_build" / "html"
    assert (html / "index.html").exists()
    executed = book_root / "book" / "executed"
    for name in registry.NOTEBOOKS:
        record = json.loads((executed / f"{name}.claims.json").read_text())
        assert record["profile"] == "smoke" and record["claims"]
        assert (html / "book" / "executed" / f"{name}.html").exists()
    report = (html / "book" / "reproduction_report.html").read_text()
    assert "Reproduction report" in report
    for name in registry.NOTEBOOKS:
        for c in json.loads((executed / f"{name}.claims.json").read_text())["claims"]:
            assert c["id"] in report
            assert c["fails_if"].strip(), f"claim {c['id']} says nothing about what would fail it"
    # glued numbers made it into the chapter (no unresolved glue keys)
    chapter = (html / "book" / "01_theorem1.html").read_text()
    assert "n_rollouts=4000" in chapter
    assert "::" not in re.sub(r"<[^>]+>", "", chapter).split("Why this matters")[0].split("Setting")[1]
    # a warm rerun executes nothing
    code = cli.main(["reproduce", "--profile", "smoke", "--out", str(executed)])
    assert code == 0
    assert capsys.readouterr().out.count("skipped (cached)") == len(registry.NOTEBOOKS)


def test_report_lists_missing_notebooks(tmp_path):
    text = render_report(tmp_path)
    for name in registry.NOTEBOOKS:
        assert f"| {name} | not run |" in text
