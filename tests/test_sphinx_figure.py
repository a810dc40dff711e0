"""The helpers of the {vgh-figure} directive (vgh_lib.driver.sphinx_figure); the smoke book's
browser test checks the built figures: numbered, with alt text, linking their notebook."""

from vgh_lib.driver import sphinx_figure


def test_default_alt_is_the_captions_first_sentence_as_plain_text():
    caption = ("The relative error $r$ (± 2 SE) of **resolved** cells, see {doc}`chapter 4 "
               "<04_transformer_costates>`. Dashed: $r$ = bound.")
    assert sphinx_figure.default_alt(caption) == (
        "The relative error r (± 2 SE) of resolved cells, see chapter 4.")


def test_default_alt_is_capped():
    alt = sphinx_figure.default_alt("word " * 200)
    assert len(alt) == sphinx_figure.ALT_MAX and alt.endswith("…")


def test_notebook_of_a_doc_path():
    assert sphinx_figure.notebook_of("executed/05_value_impact.ipynb") == "05_value_impact"


def test_default_alt_leaves_glued_values_out():
    assert sphinx_figure.default_alt(
        "Gain against {glue:text}`executed/05.ipynb::s5.n:s` checkpoints.") == \
        "Gain against checkpoints."


def test_every_chapter_figure_goes_through_vgh_figure():
    """A glued figure pasted with plain {glue:any} has no number, caption or alt text."""
    import re
    from pathlib import Path

    book = Path(__file__).resolve().parents[1] / "book"
    plain = [(p.name, m.group(0)) for p in book.glob("*.md")
             for m in re.finditer(r"```\{glue:any\} \S*\.fig\.\S*", p.read_text())]
    assert plain == []
