"""The check that a chapter's prose never interprets a number it does not glue
(vgh_lib.driver.prose): it must fail on the defect a reader found, and pass the book's chapters."""

import json
from pathlib import Path

import pytest

from vgh_lib.driver import prose

REPO = Path(__file__).resolve().parents[1]

# The sentence a first-time reader found in chapter 4: written for one run, contradicted by the next.
DEFECT = """The median bound/error ratio is {glue:text}`executed/04.ipynb::ratio:s`. Its median ratio
below 1 means the fitted bound usually lies below it, and only 0.875 of those 8 cells are covered.
"""


def _kinds(problems):
    return {p.kind for p in problems}


def test_lint_flags_each_typed_interpretation_of_the_reported_defect():
    kinds = _kinds(prose.lint(DEFECT))
    assert {"comparison with a typed number", "typed decimal number", "typed count",
            "typed quantifier 'usually'"} <= kinds


@pytest.mark.parametrize("sentence", [
    "The claim fails when the ratio is below 1.",                       # a rule ("when")
    "Each cell's z-score must be at most 3.",                           # a rule ("must")
    "A run whose value falls more than 0.05 below its start collapsed.",  # a definition
    "An interval above 0 would say that I ranks better.",               # a counterfactual
    "The threshold is p ≤ 0.05.",                                       # a decimal after ≤
    "Of {glue:text}`x` cells, {glue:text}`y` lie more than 2 SE above {glue:text}`z`.",
])
def test_lint_leaves_rules_and_glued_interpretations_alone(sentence):
    assert prose.lint(sentence) == []


def test_lint_reads_prose_only():
    text = """Prose {glue:text}`k`.

```python
x = 0.875  # code: not prose
```

$$
a \\le 0.5
$$

```{div} figure-caption
**Figure.** Its ratio is usually 0.875.
```
"""
    lines = [line for _, line in prose.prose_lines(text)]
    assert "x = 0.875  # code: not prose" not in lines and "a \\le 0.5" not in lines
    assert "**Figure.** Its ratio is usually 0.875." in lines  # captions are prose
    assert {p.line for p in prose.lint(text)} == {12}


def _executed(tmp_path, values):
    cells = [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [
        {"output_type": "display_data", "metadata": {"scrapbook": {
            "name": k, "mime_prefix": "application/papermill.record/"}},
         "data": {"application/papermill.record/text/plain": v}} for k, v in values.items()]}]
    (tmp_path / "executed").mkdir()
    (tmp_path / "executed" / "04.ipynb").write_text(json.dumps({"cells": cells}))


@pytest.mark.parametrize("ratio, contradicted", [("1.617", True), ("0.62", False)])
def test_a_comparison_is_checked_against_the_glued_value(tmp_path, ratio, contradicted):
    _executed(tmp_path, {"ratio": ratio, "n": "9", "total": "8"})
    text = "The median ratio is {glue:text}`executed/04.ipynb::ratio:s`, well below 1.\n"
    rendered = prose.render(text, tmp_path)
    assert f"⟦{ratio}⟧" in rendered
    assert bool(prose.contradictions(rendered)) is contradicted


def test_a_glued_count_larger_than_its_total_is_a_contradiction(tmp_path):
    _executed(tmp_path, {"n": "9", "total": "8"})
    text = ("{glue:text}`executed/04.ipynb::n:s` of the {glue:text}`executed/04.ipynb::total:s` "
            "cells are covered.\n")
    assert _kinds(prose.contradictions(prose.render(text, tmp_path))) == {
        "a count larger than its total"}


def test_glued_comparisons_of_both_signs_and_percentages():
    assert prose.contradictions("It is ⟦−0.3⟧, below 0.") == []
    assert prose.contradictions("It is ⟦0.3⟧, below 0.")
    assert prose.contradictions("The power is ⟦85 %⟧, above 80 %.") == []
    assert prose.contradictions("The power is ⟦75 %⟧, above 80 %.")
    # a comparison that is about another noun, far from the glued count, is not read as about it
    assert prose.contradictions("⟦0⟧ confirmation runs had their probe value fall more than "
                                "0.05 below its start.") == []


def test_the_books_chapters_type_no_interpretation():
    problems = [p for path in prose.chapters(REPO)
                for p in prose.lint(path.read_text(), path.name)]
    assert problems == [], "\n".join(map(str, problems))


def test_check_book_reads_chapters_with_their_glued_values_and_skips_preregistrations(tmp_path):
    book = tmp_path / "book"
    book.mkdir()
    _executed(book, {"ratio": "1.617", "one": "1"})
    (book / "04_chapter.md").write_text(
        "# Chapter\n\nThe ratio is {glue:text}`executed/04.ipynb::ratio:s`, below "
        "{glue:text}`executed/04.ipynb::one:s`. It is below 1.\n")
    (book / "04_preregistration.md").write_text("# Rules\n\nIts value is usually below 1.\n")
    assert {(p.path, p.kind) for p in prose.check_book(tmp_path)} == {
        ("book/04_chapter.md", "comparison with a typed number"),
        ("book/04_chapter.md", "contradicted by its glued value")}
