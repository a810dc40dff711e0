"""Every notebook runs in the smoke profile, and the book builds strictly from those outputs."""

import json
import re

import nbformat
import papermill as pm
import pytest

from vgh_lib.driver import registry, runner
from vgh_lib.driver.report import render_report

REPO = runner.REPO_ROOT


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
    assert len(titles) == 1 and titles[0].startswith(f"# {registry.number(name)} · The notebook:"), titles
    assert "## Glued keys" in lines


def _is_plumbing(source: str) -> bool:
    """A cell a reader need not read on the page: it draws a figure (plots.finish), or at least
    40 % of its code lines (and at least five) glue values into the chapter."""
    lines = [ln for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    glued = [ln for ln in lines if re.match(r"\s*(glue_text|glue_number|glue_params|glue)\(", ln)]
    return "plots.finish(" in source or (len(glued) >= 5 and len(glued) >= 0.4 * len(lines))


@pytest.mark.parametrize("name", list(registry.NOTEBOOKS))
def test_plumbing_and_figure_cells_are_collapsed_on_the_page(name):
    nb = nbformat.read(runner.notebooks_dir() / f"{name}.ipynb", as_version=4)
    plumbing = [c for c in nb.cells if c.cell_type == "code" and _is_plumbing(c.source)]
    assert plumbing, f"{name}: no figure or glue cell found (the rule above is out of date)"
    for cell in plumbing:
        assert "hide-input" in cell.metadata.get("tags", []), cell.source[:200]


@pytest.mark.slow
def test_smoke_notebooks_and_strict_book_build(smoke_book, capsys, monkeypatch):
    """`vgh book --profile smoke` on a copy of the book: all notebooks, then -W -n."""
    from vgh_lib.driver import cli

    book_root, code, out = smoke_book  # built once per session (tests/conftest.py)
    monkeypatch.setenv("VGH_CACHE", str(book_root.parent / "cache"))  # kernels inherit it
    assert code == 0, out
    html = book_root / "_build" / "html"
    assert (html / "index.html").exists()
    executed = book_root / "book" / "executed"
    for name in registry.NOTEBOOKS:
        record = json.loads((executed / f"{name}.claims.json").read_text())
        assert record["profile"] == "smoke" and record["claims"]
        # every figure was checked (vgh_lib.common.plots.finish): fonts of at least 9 pt as the
        # book shows them, no overlapping text, mathtext for symbols
        assert record["figures"], f"{name} checked no figure"
        unreadable = {k: v for k, v in record["figures"].items() if v}
        assert not unreadable, f"{name}: {unreadable}"
        assert (html / "book" / "executed" / f"{name}.html").exists()
    report = (html / "book" / "reproduction_report.html").read_text()
    assert "Reproduction report" in report
    for name in registry.NOTEBOOKS:
        for c in json.loads((executed / f"{name}.claims.json").read_text())["claims"]:
            assert c["id"] in report
            assert c["fails_if"].strip(), f"claim {c['id']} says nothing about what would fail it"
    # glued numbers made it into the chapter (no unresolved glue keys)
    chapter = (html / "book" / "01_theorem1.html").read_text()
    assert "<td><code>n_rollouts</code></td><td><code>4000</code></td>" in chapter  # params table
    for page in html.rglob("*.html"):  # a glued object that did not render shows its repr
        assert "IPython.core.display" not in page.read_text(), page
    assert "::" not in re.sub(r"<[^>]+>", "", chapter).split("Why this matters")[0].split("Setting")[1]
    # the landing page shows every chapter's reading, generated from the claims
    intro = (html / "book" / "intro.html").read_text()
    assert "Where the paper stands" in intro
    assert intro.count(" claims hold (") == len(registry.NOTEBOOKS)
    # a warm rerun executes nothing
    capsys.readouterr()
    code = cli.main(["reproduce", "--profile", "smoke", "--out", str(executed)])
    assert code == 0
    assert capsys.readouterr().out.count("skipped (cached)") == len(registry.NOTEBOOKS)


@pytest.mark.slow
def test_launch_buttons_open_source_notebooks_in_the_repository(smoke_book):
    """Every Binder URL of the built book names a file that exists in the repository, and no
    page offers Colab (whose kernels lack vgh_lib; see _config.yml)."""
    from urllib.parse import parse_qs, unquote, urlparse

    book_root, code, out = smoke_book
    assert code == 0, out
    html = book_root / "_build" / "html"
    found = {}
    for page in html.rglob("*.html"):
        text = page.read_text()
        for url in re.findall(r'href="(https://(?:mybinder\.org|colab\.research\.google\.com)/[^"]+)"',
                              text):
            url = url.replace("&amp;", "&")
            parsed = urlparse(url)
            assert "/./" not in url, url
            if parsed.netloc == "mybinder.org":
                assert parsed.path == "/v2/gh/vgh-companion/vgh-companion/main", url
                path = unquote(parse_qs(parsed.query)["urlpath"][0]).split("tree/", 1)[1]
            else:
                prefix = "/github/vgh-companion/vgh-companion/blob/main/"
                assert parsed.path.startswith(prefix), url
                path = unquote(parsed.path[len(prefix):])
            assert (REPO / path).is_file(), f"{page.name}: {url} names {path}, not in the repository"
            found.setdefault(page.stem, set()).add((parsed.netloc, path))
    for name in registry.NOTEBOOKS:  # each executed-notebook page launches its own source
        assert found.get(name) == {("mybinder.org", f"notebooks/{name}.ipynb")}, name


def test_report_groups_claims_by_chapter_with_readings(tmp_path):
    from vgh_lib.driver import report

    executed = tmp_path / "book" / "executed"
    executed.mkdir(parents=True)
    name = next(iter(registry.NOTEBOOKS))
    claims = [{"id": "a.one", "statement": "first | statement", "kind": "identity", "value": 1.0,
               "op": "<=", "threshold": 2.0, "passed": True, "ci": None, "fails_if": "a bug"},
              {"id": "a.two", "statement": "second", "kind": "empirical", "value": 3.0,
               "op": "<=", "threshold": 2.0, "passed": False, "ci": [2.5, 3.5], "fails_if": "x"}]
    (executed / f"{name}.claims.json").write_text(json.dumps(
        {"notebook": name, "profile": "smoke", "git_commit": "0" * 40, "created": "now",
         "claims": claims, "finding": "x wins | y does not"}))
    report.write_report(executed, tmp_path / "book" / "reproduction_report.md")
    text = (tmp_path / "book" / "reproduction_report.md").read_text()
    assert "## Claims by chapter" in text and "first \\| statement" in text
    assert "*Fails if* a bug" in text and "**FAIL**" in text
    summary = (executed / "summary.md").read_text()
    assert "1 of 2 claims hold" in summary and "**does not hold**" in summary
    assert "| x wins \\| y does not |" in summary  # the notebook's one-line finding, escaped
    # what failed, and why: claim-level detail in the report, one line per chapter on the landing page
    assert "`a.two` = 3 [2.5, 3.5] (required <= 2): x" in text and "`a.two`" not in summary
    paper, checks = summary.split("**The book's own checks**")
    for nb in registry.NOTEBOOKS.values():  # each chapter in the table of its kind
        title = nb.title.replace("`", "").replace("|", "\\|")
        assert (title in paper) == nb.paper_claim and (title in checks) != nb.paper_claim, nb.name
    assert report.chapter_status(claims[:1]) == "reproduced"
    assert report.chapter_status([]) == "not run"
    assert report.chapter_status([claims[0], {**claims[1], "value": None}]) == "inconclusive"


def test_build_status_page_lists_each_run_and_the_versions(tmp_path):
    from vgh_lib.driver import report

    executed = tmp_path / "executed"
    executed.mkdir()
    names = list(registry.NOTEBOOKS)
    for name, commit, seconds in ((names[0], "abcdef0123", 75.0), (names[1], "1234567890", 9.0)):
        (executed / f"{name}.claims.json").write_text(json.dumps(
            {"notebook": name, "profile": "smoke", "git_commit": commit, "created": "then",
             "seconds": seconds, "claims": [{"passed": True}, {"passed": False}],
             "figures": {"a.fig": [], "b.fig": ["texts 'x' and 'y' overlap"]}}))
    text = report.render_status(executed, "abcdef0123456")
    assert (f"| [{names[0]}]({names[0]}.ipynb) | smoke | 1.2 min | `abcdef0`, then | 1 of 2 hold "
            "| 2 checked; hard to read: b.fig |") in text
    assert "`1234567`, then (reused from an earlier build)" in text and "| 9 s |" in text
    assert f"| {names[2]} | not run |" in text
    assert "add up to 1.4 min" in text and "| torch |" in text and "| python |" in text


def test_params_table_is_collapsed_and_escaped():
    from vgh_lib.harness.glue import params_html

    text = params_html({"seed": 0, "task": "a<b", "grid": [1, 2]})
    assert text.startswith('<details class="vgh-params">') and "open" not in text
    assert "(3)" in text and "a&lt;b" in text and "<code>[1, 2]</code>" in text


def test_report_lists_missing_notebooks(tmp_path):
    text = render_report(tmp_path)
    for name in registry.NOTEBOOKS:
        assert f"| {name} | not run |" in text


def test_every_page_names_the_build_commit_and_date(smoke_book):
    """Provenance on every page: the footer of each built page gives the build's date and
    commit (vgh_lib.driver.sphinx_launch)."""
    from vgh_lib.harness.claims import git_commit

    book_root, code, out = smoke_book
    assert code == 0, out
    commit = git_commit(book_root)
    short = commit[:7] if commit != "unknown" else "unknown (not a git checkout)"
    html = book_root / "_build" / "html"
    pages = [p for p in html.rglob("*.html") if not p.relative_to(html).parts[0].startswith("_")]
    assert pages
    for page in pages:
        text = page.read_text()
        if page.name in ("genindex.html", "search.html") or "http-equiv" in text[:300].lower():
            continue  # the index, the search page and redirect stubs have no footer
        assert re.search(rf'class="vgh-provenance">Built on \d{{4}}-\d\d-\d\d \d\d:\d\d \(UTC\) '
                         rf"from commit <code>{re.escape(short)}</code>", text), page.name


def test_provenance_footer_text():
    from vgh_lib.driver.sphinx_launch import provenance_footer

    assert "<code>abcdef0</code>" in provenance_footer("abcdef0123", "2026-12-01 10:00")
    assert "not a git checkout" in provenance_footer("unknown", "2026-12-01 10:00")


def test_each_chapter_page_and_notebook_page_carries_the_notebooks_number_and_title():
    """One numbering: the sidebar shows these titles, the landing table the registry's."""
    import yaml

    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    assert not any(part.get("numbered") for part in toc["parts"])  # Sphinx would renumber 1, 2, ...
    chapters = {}
    for part in toc["parts"]:
        for ch in part["chapters"]:
            for sec in ch.get("sections") or []:
                if sec["file"].startswith("book/executed/"):
                    chapters[sec["file"].rsplit("/", 1)[1]] = ch["file"]
    for name, nb in registry.NOTEBOOKS.items():
        first = (REPO / f"{chapters[name]}.md").read_text().splitlines()[0]
        assert first == f"# {registry.number(name)} · {nb.title}", name
        cell = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())["cells"][0]
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        assert src.startswith(f"# {registry.number(name)} · The notebook: "), name


def test_glue_params_shows_the_values_this_run_used(monkeypatch):
    """The parameters cell shows the defaults; the page must show what ran (its profile too)."""
    import IPython.display
    import myst_nb

    shown, glued = [], {}
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append(obj))
    monkeypatch.setattr(myst_nb, "glue", lambda key, obj, display=True: glued.update({key: obj}))
    from vgh_lib.harness.glue import glue_params

    glue_params("x.params", {"profile": "smoke", "seed": 3})
    assert "x.params" in glued and len(shown) == 1
    html = shown[0].data
    assert "Parameters this run used (profile smoke)" in html and "<code>3</code>" in html


def test_shares_read_as_percentages_and_missing_values_as_na():
    from vgh_lib.harness.glue import share_text

    assert share_text(0.07) == "7.0 %" and share_text(1.0) == "100.0 %"
    assert share_text(float("nan")) == share_text(None) == "n/a"


def test_glued_text_shows_exactly_as_written():
    """myst-nb literal_evals a glued plain text: "4,000" must not become (4, 0)."""
    from myst_nb.core.variables import format_plain_text

    from vgh_lib.harness.glue import Raw, Shown, shown_text

    for text in ("4,000", "5, 6", "1.0, 0.8 and 0.6", "n/a", "'quoted'", "0.25", "-0.01, -0.007"):
        assert format_plain_text(repr(Shown(text)), "s") == text == shown_text(repr(Shown(text)))
    assert repr(Raw('{"a": 1}')) == '{"a": 1}'
