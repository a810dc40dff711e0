"""The generated glossary, reproducibility summary and notebook zip (vgh_lib.driver.glossary,
vgh_lib.driver.runner.write_notebook_zip)."""

import json
import zipfile

from vgh_lib.driver import glossary, registry
from vgh_lib.driver.runner import write_notebook_zip


def test_glossary_lists_the_chapters_that_use_each_entry(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "01_a.md").write_text("The headroom $H$ and pass@8.\n")
    (tmp_path / "book" / "02_b.md").write_text("A GRPO group size $G$ of 8.\n")
    (tmp_path / "book" / "intro.md").write_text("$H$ here is not a chapter.\n")
    text = glossary.render_glossary(tmp_path)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| $")}
    assert "{doc}`01 </book/01_a>`" in rows["$H$"] and "02_b" not in rows["$H$"]
    assert rows["$G$"].endswith("{doc}`02 </book/02_b>` |")
    (tmp_path / "book" / "02_preregistration.md").write_text("Its group size.\n")
    assert glossary._short("book/02_preregistration") == "02 registration"
    assert "{doc}`02 registration </book/02_preregistration>`" in glossary.render_glossary(tmp_path)
    assert rows["$\\lambda$, $\\lambda^D$, $\\lambda^C$"].endswith("| — |")
    assert "intro" not in text


def test_reproducibility_summary_counts_the_claims_and_names_what_paper_changes(tmp_path):
    names = list(registry.NOTEBOOKS)
    for name, passed, seconds in ((names[0], [True, True], 60.0), (names[1], [True, False], 30.0)):
        (tmp_path / f"{name}.claims.json").write_text(json.dumps(
            {"notebook": name, "profile": "default", "seconds": seconds, "finding": "x | y",
             "claims": [{"passed": p, "kind": "empirical", "value": 1.0} for p in passed]}))
    text = glossary.render_reproducibility(tmp_path, tmp_path)
    assert f"2 of {len(names)} notebooks ran in this build (profile default); 3 of 4 claims hold" in text
    held, rest = text.split("## What did not hold")
    assert registry.NOTEBOOKS[names[0]].title in held and registry.NOTEBOOKS[names[1]].title in rest
    assert "x \\| y" in text and "ran for 1.5 min in all" in text
    paper = registry.NOTEBOOKS["10_real_lm_task_suite"].profiles["paper"]
    assert glossary.paper_profile_changes("10_real_lm_task_suite") == ", ".join(f"`{k}`" for k in paper)


def test_notebook_zip_holds_every_executed_notebook_and_claims_file(tmp_path):
    (tmp_path / "a.ipynb").write_text("{}")
    (tmp_path / "a.claims.json").write_text("{}")
    (tmp_path / "notes.md").write_text("not a notebook")
    dest = write_notebook_zip(tmp_path)
    assert sorted(zipfile.ZipFile(dest).namelist()) == ["a.claims.json", "a.ipynb"]
    assert not list(tmp_path.glob("*.tmp"))
