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
