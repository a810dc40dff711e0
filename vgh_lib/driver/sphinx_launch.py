"""Sphinx extension for the book: launch buttons that open the source notebook, offline MathJax.

Registered in ``_config.yml`` (``sphinx.extra_extensions: vgh_lib.driver.sphinx_launch``).

* **Launch buttons.** sphinx-book-theme builds the Binder (and, if configured, Colab) URLs of a notebook page
  from the page's own path, ``book/executed/NAME.ipynb``: a build output that the repository
  does not hold (and ``path_to_book: .`` adds a ``./``). The page of an executed notebook is
  the output of ``notebooks/NAME.ipynb``, so this extension rewrites the buttons to open that
  file. It runs in ``html-page-context`` after the theme (priority 502 > 501). A page whose
  source notebook does not exist in the repository gets no launch buttons.
* **Provenance.** Every page's footer names the build's date and commit.
* **Page hygiene.** Scripts that another extension added twice (sphinx-thebe's inline
  ``const THEBE_JS_URL``, a JavaScript error on every page) are emitted once; the page context gets an
  explicit ``default_mode`` (``auto``), which it otherwise logs as an error on a first visit;
  and a small stylesheet lets wide tables wrap inside the column (and scroll sideways on a
  phone) and wide display equations scroll instead of being clipped.
* **Glued images pasted into another page.** myst-nb's ``{glue:any}`` with ``:doc:`` links a
  glued image as ``_images/<sha256>.png`` but only writes that file when the notebook page
  itself displays the figure; a figure glued with ``display=False`` and never shown (notebook
  05's pilot placeholder) became a broken image. At the end of the build every image glued by
  an executed notebook is written to ``_images`` under that same name, if missing.
* **Offline math.** MathJax 3 is served from the built site (``_static/mathjax/``), copied
  from the PyPI package ``django-static-mathjax`` (a plain MathJax 3 distribution, no
  dependencies). ``_config.yml`` points ``mathjax_path`` at it, so pages render math without a
  network, online and offline alike.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vgh_lib.driver import runner

EXECUTED_PREFIX = "book/executed/"
NOTEBOOKS_DIR = "notebooks"
# The parts of the MathJax 3 distribution the book uses: the combined component named by
# mathjax_path, its CHTML fonts, and the TeX extensions it may autoload.
MATHJAX_FILES = ("tex-mml-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions")


def source_notebook(pagename: str) -> str | None:
    """Repository path of the source notebook behind an executed-notebook page, if it exists."""
    if not pagename.startswith(EXECUTED_PREFIX):
        return None
    name = pagename[len(EXECUTED_PREFIX):]
    if "/" in name or not (runner.notebooks_dir() / f"{name}.ipynb").is_file():
        return None
    return f"{NOTEBOOKS_DIR}/{name}.ipynb"


def _repo_parts(app) -> tuple[str, str, str] | None:
    opts = app.config.html_theme_options or {}
    url = (opts.get("repository_url") or "").rstrip("/")
    m = re.match(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?$", url)
    if not m:
        return None
    return m.group(1), m.group(2), opts.get("repository_branch") or "main"


def launch_urls(app, path: str) -> dict[str, str]:
    """The launch URL of each configured service for a repository path."""
    opts = app.config.html_theme_options or {}
    launch = opts.get("launch_buttons") or {}
    parts = _repo_parts(app)
    if parts is None:
        return {}
    org, repo, branch = parts
    ui = {"classic": "tree", "jupyterlab": "lab/tree"}.get(
        launch.get("notebook_interface", "classic"), "tree")
    urls = {}
    binder = (launch.get("binderhub_url") or "").strip("/")
    if binder:
        urls["Binder"] = f"{binder}/v2/gh/{org}/{repo}/{branch}?urlpath={quote(f'{ui}/{path}')}"
    colab = (launch.get("colab_url") or "").strip("/")
    if colab:
        urls["Colab"] = f"{colab}/github/{org}/{repo}/blob/{branch}/{path}"
    return urls


def _fix_launch_buttons(app, pagename: str, templatename: str, context: dict[str, Any],
                        doctree) -> None:
    buttons = context.get("header_buttons")
    if not buttons:
        return
    groups = [b for b in buttons if b.get("label") == "launch-buttons"]
    if not groups:
        return
    path = source_notebook(pagename)
    if path is None:
        for group in groups:
            buttons.remove(group)
        return
    urls = launch_urls(app, path)
    for group in groups:
        kept = []
        for button in group.get("buttons", []):
            if button.get("type") != "link":
                kept.append(button)
            elif button.get("text") in urls:
                kept.append({**button, "url": urls[button["text"]]})
        group["buttons"] = kept
        if not kept:
            buttons.remove(group)


def _fix_dot_paths(app, pagename: str, templatename: str, context: dict[str, Any],
                   doctree) -> None:
    """``path_to_book: .`` must not leave ``/./`` in the repository, edit or source links."""
    for button in context.get("header_buttons") or []:
        for b in [button, *button.get("buttons", [])]:
            if isinstance(b.get("url"), str):
                b["url"] = b["url"].replace("/./", "/")


def _dedupe_scripts(app, pagename: str, templatename: str, context: dict[str, Any],
                    doctree) -> None:
    if not context.get("default_mode"):  # pydata-sphinx-theme reads it from the context
        context["default_mode"] = "auto"
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        # the same inline script may come once with filename None and once with ''
        key = (getattr(script, "filename", script) or "",
               repr(sorted((getattr(script, "attributes", None) or {}).items())))
        if key in seen:
            continue
        seen.add(key)
        kept.append(script)
    scripts[:] = kept


CSS_NAME = "vgh-book.css"
CSS = """/* vgh_lib.driver.sphinx_launch: wide tables wrap inside the content column */
.bd-article table { max-width: 100%; }
.bd-article table td, .bd-article table th { overflow-wrap: break-word; }
.bd-article table td code, .bd-article table th code { white-space: normal; overflow-wrap: anywhere; }
/* a run's parameters (vgh_lib.harness.glue.params_html): a compact table, collapsed */
details.vgh-params { margin: 0.5em 0 1em; }
details.vgh-params > summary { cursor: pointer; font-weight: 600; }
details.vgh-params table { width: auto; font-size: 0.9em; margin-top: 0.4em; }
/* a long inline identifier (in a heading too) breaks rather than widening the page */
.bd-article code.literal, .bd-article code.literal span.pre { white-space: normal; overflow-wrap: anywhere; }
/* display equations too wide for the column scroll inside it instead of being clipped */
.bd-article div.math, .bd-article mjx-container[display="true"] {
  display: block; max-width: 100%; overflow-x: auto; overflow-y: hidden; }
/* a table wider than the column scrolls sideways inside it, at every width: every column
   stays readable and nothing is cut off at the right */
.bd-article table { display: block; max-width: 100%; overflow-x: auto; }
@media (max-width: 720px) {
  .bd-article table { font-size: 0.85em; }
}
"""


def write_static(app, name: str, text: str) -> None:
    """Write ``text`` to ``_static/name`` of an HTML build (the book's own CSS and scripts)."""
    if app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    (static / name).write_text(text)


def _write_css(app) -> None:
    write_static(app, CSS_NAME, CSS)


GLUE_PREFIX = "application/papermill.record/"
IMAGE_MIMES = {"image/png": ".png", "image/jpeg": ".jpeg", "image/gif": ".gif"}


def _write_glued_images(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    import hashlib
    import json
    from binascii import a2b_base64

    images = Path(app.outdir) / app.builder.imagedir
    for docname in sorted(app.env.found_docs):
        path = Path(app.env.doc2path(docname))
        if path.suffix != ".ipynb" or not path.is_file():
            continue
        for cell in json.loads(path.read_text()).get("cells", []):
            for output in cell.get("outputs", []):
                for mime, ext in IMAGE_MIMES.items():
                    data = output.get("data", {}).get(GLUE_PREFIX + mime)
                    if not isinstance(data, str):
                        continue
                    content = a2b_base64(data)
                    target = images / f"{hashlib.sha256(content).hexdigest()}{ext}"
                    if not target.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(content)


def mathjax_source() -> Path:
    """The MathJax 3 ``es5`` folder shipped by the django-static-mathjax package."""
    import mathjax  # django-static-mathjax; a plain static-files package

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    path = app.config.mathjax_path or ""
    if "://" in path or not path.startswith("mathjax/"):
        return  # a CDN or another local copy: nothing to serve
    src = mathjax_source()
    dest = Path(app.outdir) / "_static" / "mathjax"
    for rel in MATHJAX_FILES:
        if (src / rel).is_dir():
            shutil.copytree(src / rel, dest / rel, dirs_exist_ok=True)
        else:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dest / rel)


def provenance_footer(commit: str, date: str) -> str:
    """The footer of every page: the build's date and commit (``unknown`` outside a git
    checkout). Each notebook's own commit and run time are on the build-status page."""
    short = commit[:7] if commit and commit != "unknown" else "unknown (not a git checkout)"
    return (f'<p class="vgh-provenance">Built on {date} (UTC) from commit <code>{short}</code> '
            f"of the value-gradient companion. Each notebook's own commit and run time are on "
            f"the build-status page.</p>")


def _add_provenance(app, config) -> None:
    import datetime as dt

    from vgh_lib.harness.claims import git_commit

    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    options = dict(config.html_theme_options or {})
    options["extra_footer"] = provenance_footer(git_commit(Path(app.srcdir)), date)
    config.html_theme_options = options


def setup(app):
    app.connect("config-inited", _add_provenance)
    app.connect("html-page-context", _fix_launch_buttons, priority=502)
    app.connect("html-page-context", _fix_dot_paths, priority=503)
    # html-page-context is emitted with emit_firstresult: stay just after the theme's 501
    app.connect("html-page-context", _dedupe_scripts, priority=504)
    app.connect("builder-inited", _write_css)
    app.add_css_file(CSS_NAME)
    app.connect("build-finished", _copy_mathjax)
    app.connect("build-finished", _write_glued_images)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
