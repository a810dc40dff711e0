"""CITATION.cff names this version of the package and cites the paper."""

import tomllib

import yaml

from vgh_lib.paths import REPO_ROOT


def test_citation_matches_the_package_and_cites_the_paper():
    cff = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert cff["cff-version"] == "1.2.0"
    assert str(cff["version"]) == meta["version"]
    assert cff["license"] == meta["license"]["text"]
    (paper,) = cff["references"]
    assert {"type": "other", "value": "arXiv:2605.21654"} in paper["identifiers"]
    intro = (REPO_ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    assert f"Version {meta['version']}" in intro  # the BibTeX on the landing page


def test_every_arxiv_reference_links_to_its_abstract_page():
    """The bibliography page shows a link for each arXiv paper (issue 23: links out)."""
    import re

    text = (REPO_ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    entries = re.findall(r"@\w+\{[^@]*", text)
    arxiv = [e for e in entries if "eprint" in e]
    assert len(arxiv) >= 5
    for entry in arxiv:
        eprint = re.search(r"eprint\s*=\s*\{([^}]*)\}", entry).group(1)
        assert f"url           = {{https://arxiv.org/abs/{eprint}}}" in entry, entry[:60]
