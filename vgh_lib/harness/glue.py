"""What a notebook glues into its chapter: formatted numbers and phrases, parameter tables and
HTML tables (myst-nb ``glue``). Notebooks and :mod:`vgh_lib.harness.claims` use it; it imports
nothing else from vgh_lib.
"""

from __future__ import annotations

import math
from typing import Sequence


class Shown:
    """A glued text that a chapter's ``{glue:text}`` shows exactly as ``text``.

    myst-nb passes a glued value's plain text through ``ast.literal_eval`` before it formats
    it, so an unquoted "4,000" would become the tuple ``(4, 0)`` and "5, 6" the tuple
    ``(5, 6)``. The plain text is therefore the string's Python literal, which evaluates back to
    exactly ``text``."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


class Raw:
    """A glued value whose plain text is ``text`` itself, for machine readers (the claims
    record, read back with ``json.loads``); never shown in a chapter."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def shown_text(plain: str) -> str:
    """What a chapter shows for a glued plain text, as myst-nb derives it (``literal_eval``,
    then ``str``; the text itself when it is no literal)."""
    import ast

    try:
        return str(ast.literal_eval(plain))
    except (SyntaxError, ValueError):
        return plain


def format_value(value: float | None) -> str:
    """A short, human-readable number: a whole number as an integer with thousands separators
    (500000.0 → "500,000"), anything else to 4 significant digits, scientific when tiny or huge."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    v = float(value)
    if v == 0.0:
        return "0"
    if v.is_integer() and abs(v) < 1e12:
        return f"{int(v):,}"
    if 1e-3 <= abs(v) < 1e5:
        text = f"{v:.4g}"
        if text in ("1", "-1") and abs(v) != 1.0:  # a cosine of 0.99999 must not read as exactly 1
            text = f"{v:.7f}"
        return text
    return f"{v:.3e}"


def interval_text(value: float, lo: float, hi: float, floor: float | None = None) -> str:
    """``+0.12 [-0.30, +0.50]``, the one format of an estimate with its interval in the book.
    An undefined interval reads ``[interval n/a]``; a lower end below ``floor`` (an R² interval
    on its log scale can reach −1,000) reads ``< floor``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{value:+.2f} [interval n/a]"
    low = f"< {floor:+.0f}" if floor is not None and lo < floor else f"{lo:+.2f}"
    return f"{value:+.2f} [{low}, {hi:+.2f}]"


def format_threshold(op: str, threshold: float | Sequence[float]) -> str:
    if op == "in":
        lo, hi = threshold
        return f"in [{format_value(lo)}, {format_value(hi)}]"
    return f"{op} {format_value(threshold)}"


def glue_text(key: str, text: str) -> None:
    """Glue a preformatted string (shown without quotes) under ``key``."""
    from myst_nb import glue

    glue(key, Shown(text), display=False)


def glue_number(key: str, value: float) -> str:
    """Glue a number, formatted with :func:`format_value`; returns the text."""
    text = format_value(value)
    glue_text(key, text)
    return text


def params_html(params: dict, title: str = "Parameters of this run") -> str:
    """A compact two-column table of a run's parameters inside a ``<details>`` (collapsed).

    HTML rather than Markdown because myst-nb pastes glued HTML across documents
    (``{glue:any}`` with ``:doc:``) but not glued Markdown.
    """
    import html

    rows = "".join(f"<tr><td><code>{html.escape(str(k))}</code></td>"
                   f"<td><code>{html.escape(repr(v) if isinstance(v, str) else str(v))}</code></td></tr>"
                   for k, v in params.items())
    return (f'<details class="vgh-params"><summary>{html.escape(title)} ({len(params)})</summary>'
            f'<table class="table"><thead><tr><th>parameter</th><th>value</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></details>")


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain HTML table (cells escaped), for glued tables that a chapter pastes with
    ``{glue:any}`` from another page (glued Markdown does not paste across documents)."""
    import html

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (for a notebook's own page; across pages use :func:`html_table`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def share_text(value: float | None) -> str:
    """A share as a percentage ("7.0 %"); a missing one as every missing value ("n/a")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * float(value):.1f} %"


def glue_share(key: str, value: float | None) -> None:
    """Glue a share (a rate in [0, 1]) as a percentage, for text that reads "in 7.0 % of them"."""
    glue_text(key, share_text(value))


def glue_params(key: str, params: dict) -> None:
    """Glue :func:`params_html` under ``key`` (a chapter pastes it with ``{glue:any}``) and show
    it on the notebook's page, titled with the profile: the parameters cell above it shows the
    defaults, whatever profile or overrides ran."""
    from IPython.display import HTML, display
    from myst_nb import glue

    glue(key, HTML(params_html(params)), display=False)
    display(HTML(params_html(params, f"Parameters this run used (profile {params.get('profile', '?')})")))
