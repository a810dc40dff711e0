"""Sphinx extension: numbered figures, with alt text and their notebook, from glued images.

A chapter shows a figure that its executed notebook glued::

    ```{vgh-figure} s5.fig.health
    :doc: executed/05_value_impact.ipynb
    :name: fig-s5-health
    :alt: optional; by default the caption's first sentence

    GRPO health: for every confirmation run, ...
    ```

The directive pastes the glued image (as myst-nb's ``{glue:any}`` with ``:doc:`` does), gives
it alt text, wraps it in a figure with the caption, which Sphinx numbers (``numfig``), and ends
the caption with a link to the notebook that drew it. A figure without a caption is an error:
every figure in the book says what it shows.

Images elsewhere (the figures a notebook page shows itself) get an alt text that names their
notebook, instead of their hashed file name.

Every image in a page's article is a link to its full-size file (``_static/vgh-images.js``), so
that on a phone a tap opens a three-panel figure at full size, to zoom into.

Registered in ``_config.yml`` (``sphinx.extra_extensions``).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from docutils import nodes
from docutils.parsers.rst import directives

ALT_MAX = 250
ALT_ATTRIBUTE = "vgh_alt"  # the alt text a figure node carries until its image is pasted


def default_alt(caption: str) -> str:
    """The first sentence of a caption as plain text: Markdown emphasis, roles, code marks and
    math dollars removed, at most :data:`ALT_MAX` characters."""
    text = re.sub(r"\{glue[^}]*\}`[^`]*`", "", caption)  # glued values: not in the alt
    text = re.sub(r"\{[a-z:]+\}`([^`<]*?)\s*(?:<[^>]*>)?`", r"\1", text)  # roles: their text
    text = re.sub(r"[*`$\\]", "", text)
    text = " ".join(text.split())
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first if len(first) <= ALT_MAX else first[: ALT_MAX - 1].rstrip() + "…"


def notebook_of(doc: str) -> str:
    """``executed/05_value_impact.ipynb`` -> ``05_value_impact``."""
    return PurePosixPath(doc).stem


def _directive():
    from myst_nb.ext.glue.directives import PasteAnyDirective

    class VghFigure(PasteAnyDirective):
        has_content = True
        option_spec = {"doc": directives.unchanged_required, "name": directives.unchanged,
                       "alt": directives.unchanged}

        def run(self):
            if not self.content:
                raise self.error(f"vgh-figure {self.arguments[0]}: a figure needs a caption")
            if "doc" not in self.options:
                raise self.error(f"vgh-figure {self.arguments[0]}: give :doc:, the executed "
                                 "notebook that glued it")
            caption_text = "\n".join(self.content)
            alt = self.options.get("alt") or default_alt(caption_text)
            # with :doc: myst-nb pastes a pending reference, replaced by its image in a
            # post-transform; _set_alt gives that image the alt text once it is there
            pasted = super().run()
            figure = nodes.figure("", *pasted)
            figure[ALT_ATTRIBUTE] = alt
            self.set_source_info(figure)
            doc = self.options["doc"]
            target = str(PurePosixPath(doc).with_suffix(""))
            holder = nodes.Element()
            self.state.nested_parse(self.content, self.content_offset, holder)
            first = holder[0] if len(holder) else None
            if not isinstance(first, nodes.paragraph):
                raise self.error(f"vgh-figure {self.arguments[0]}: the caption must start with "
                                 "a paragraph")
            link = nodes.Element()
            self.state.nested_parse(
                [f"Notebook {{doc}}`{notebook_of(doc)} <{target}>`."], self.content_offset, link)
            caption = nodes.caption(first.rawsource, "", *first.children)
            caption += nodes.Text(" ")
            caption += link[0].children
            figure += caption
            if len(holder) > 1:
                figure += nodes.legend("", *holder[1:])
            self.add_name(figure)  # the :name: target, when given; Sphinx numbers the figure
            return [figure]

    return VghFigure


def _set_alt(app, doctree, docname: str) -> None:
    """Alt text for every image: a {vgh-figure}'s from its option or caption; a notebook page's
    own images name their notebook, not their hashed file name."""
    for figure in doctree.findall(nodes.figure):
        if ALT_ATTRIBUTE in figure:
            for image in figure.findall(nodes.image):
                image["alt"] = figure[ALT_ATTRIBUTE]
    if not docname.startswith("book/executed/"):
        return
    name = docname.rsplit("/", 1)[-1]
    for n, image in enumerate(doctree.findall(nodes.image), start=1):
        alt = image.get("alt", "")
        if not alt or alt == image.get("uri") or re.fullmatch(r"[\w./-]+\.(png|svg|jpe?g)", alt):
            image["alt"] = f"Figure {n} drawn by notebook {name}; the chapter's caption describes it"


JS_NAME = "vgh-images.js"
JS = """/* vgh_lib.driver.sphinx_figure: every image in the article links to its full-size file,
 * so a reader on a phone can tap a figure and zoom into it. */
document.addEventListener("DOMContentLoaded", function () {
  "use strict";
  document.querySelectorAll("article img").forEach(function (img) {
    if (img.closest("a")) return;                 // already a link
    var link = document.createElement("a");
    link.href = img.getAttribute("src");
    link.className = "vgh-full-size";
    link.title = "Open the figure at full size";
    img.parentNode.insertBefore(link, img);
    link.appendChild(img);
  });
});
"""


def _write_js(app) -> None:
    from vgh_lib.driver.sphinx_launch import write_static

    write_static(app, JS_NAME, JS)


def setup(app):
    app.add_directive("vgh-figure", _directive())
    app.connect("doctree-resolved", _set_alt)
    app.connect("builder-inited", _write_js)
    app.add_js_file(JS_NAME)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
