"""Sphinx extension for the book: the sidebar toggles (☰ and the page-contents button) work.

Registered in ``_config.yml`` (``sphinx.extra_extensions: vgh_lib.driver.sphinx_nav``).

pydata-sphinx-theme 0.17 puts its own ``.primary-toggle`` and ``.secondary-toggle`` buttons in
its header, which sphinx-book-theme hides; the buttons a reader sees are sphinx-book-theme's, in
the article header. Both themes' scripts bind ``document.querySelector(".primary-toggle")`` (and
``.secondary-toggle``): only the first, hidden button (pydata-sphinx-theme issue 2451). So on a
phone ☰ only showed its tooltip and the chapter list never opened, the page-contents button did
nothing, and on the desktop ☰ did not hide the sidebar.

This extension ships a small script (``_static/vgh-nav.js``) that forwards a click on any
other toggle to the first one of its kind, the one the themes bound: on a narrow screen that
opens the chapter list (or the page's contents) in the theme's dialog, on a wide one
sphinx-book-theme's handler collapses or restores the sidebar. The click is caught on the
document in the capture phase and stopped there, so the themes' handlers run once, on the
first button, however a later theme version binds them; a page with one toggle of a kind is
left alone. tests/test_browser.py taps ☰ at 390 px and clicks it at 1,400 px in the built book.
"""

from __future__ import annotations

JS_NAME = "vgh-nav.js"
JS = """/* vgh_lib.driver.sphinx_nav: every sidebar toggle works, not only the first (hidden) one.
 * pydata-sphinx-theme and sphinx-book-theme bind document.querySelector('.primary-toggle')
 * (and '.secondary-toggle') only: the hidden header button (pydata-sphinx-theme issue 2451).
 * A click on any other toggle is forwarded to that bound one. */
(function () {
  "use strict";
  var KINDS = ["primary-toggle", "secondary-toggle"];
  document.addEventListener("click", function (event) {
    var target = event.target;
    var button = target && target.closest ? target.closest("button.sidebar-toggle") : null;
    if (!button) return;
    for (var i = 0; i < KINDS.length; i++) {
      if (!button.classList.contains(KINDS[i])) continue;
      var bound = document.querySelector("." + KINDS[i]);
      if (!bound || bound === button) return;  // the themes' own handlers do it
      event.preventDefault();
      event.stopImmediatePropagation();
      if (window.bootstrap && window.bootstrap.Tooltip) {  // the tooltip is not the answer
        var tip = window.bootstrap.Tooltip.getInstance(button);
        if (tip) tip.hide();
      }
      button.blur();
      bound.click();
      return;
    }
  }, true);
})();
"""


def _write_js(app) -> None:
    from vgh_lib.driver.sphinx_launch import write_static

    write_static(app, JS_NAME, JS)


def setup(app):
    app.connect("builder-inited", _write_js)
    app.add_js_file(JS_NAME)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
