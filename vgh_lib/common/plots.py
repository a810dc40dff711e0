"""The book's figure style and the plotting helpers that more than one notebook uses.

One theme and one colour-blind-safe palette, set in one place: call :func:`set_theme` once at
the top of a notebook. The palette is seaborn's ``colorblind`` (Okabe-Ito-like), so hues stay
distinguishable under the common colour-vision deficiencies. Every helper draws on a given
``matplotlib`` axis and returns it; captions (with their provenance) stay in the chapters.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence

PALETTE_NAME = "colorblind"
CONTEXT = "notebook"
STYLE = "whitegrid"


def palette(n: int | None = None) -> list:
    """The book's colour-blind-safe palette (``n`` colours, cycling if more are asked for)."""
    import seaborn as sns

    return sns.color_palette(PALETTE_NAME, n)


def set_theme() -> None:
    """Apply the book's seaborn theme and palette to every later matplotlib figure."""
    import seaborn as sns

    sns.set_theme(context=CONTEXT, style=STYLE, palette=PALETTE_NAME, rc={
        "figure.dpi": 100, "savefig.dpi": 100, "figure.autolayout": False,
        # sizes in points as the book shows them: finish() scales a figure to the column
        "font.size": 10, "axes.labelsize": 10, "axes.titlesize": 10, "figure.titlesize": 10,
        "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
        "legend.title_fontsize": 9})


def band(ax, x, mean, lo, hi, *, label: str | None = None, color=None, marker: str = "o"):
    """A line of means with a shaded uncertainty band ``[lo, hi]`` (e.g. a 95 % interval)."""
    line, = ax.plot(x, mean, marker=marker, label=label, color=color)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    return ax


def intervals(ax, labels: Sequence[str], estimates, lo, hi, *, reference: float | None = None,
              color=None):
    """Point estimates with interval bars, one row per label (a predictor comparison)."""
    import numpy as np

    y = np.arange(len(labels))
    est = np.asarray(estimates, dtype=float)
    err = np.vstack([est - np.asarray(lo, dtype=float), np.asarray(hi, dtype=float) - est])
    ax.errorbar(est, y, xerr=err, fmt="o", capsize=3, color=color or palette(1)[0])
    ax.set_yticks(y, labels)
    if reference is not None:
        ax.axvline(reference, color="0.4", linestyle="--", linewidth=1)
    ax.invert_yaxis()
    return ax


def probe_curves(ax, curves, tolerance: float, *, relative: bool = True):
    """GRPO runs' probe-value curves and the collapse line of the pilots' rule (notebooks 03, 05,
    08, 09 and 10): each curve ``(steps, values, style)`` is drawn minus its own start when
    ``relative`` (the line then sits at ``−tolerance``), else as it is (the line at the first
    curve's start minus ``tolerance``). ``style`` holds the plot keywords (label, colour, ...)."""
    import numpy as np

    for steps, values, style in curves:
        v = np.asarray(values, dtype=float)
        ax.plot(steps, v - v[0] if relative else v, **{"marker": "o", "ms": 3, "lw": 1, **style})
    start = 0.0 if relative or not curves else float(curves[0][1][0])
    ax.axhline(start - tolerance, color="0.4", ls="--", lw=0.8)
    ax.set_xlabel("GRPO step")
    return ax


def heatmap(ax, matrix, *, xticklabels="auto", yticklabels="auto", fmt: str = ".2f",
            cmap: str = "viridis", vmin=None, vmax=None, cbar_label: str | None = None):
    """An annotated heatmap of a 2-D grid (a perceptually uniform, colour-blind-safe map)."""
    import seaborn as sns

    sns.heatmap(matrix, ax=ax, annot=True, fmt=fmt, cmap=cmap, vmin=vmin, vmax=vmax,
                xticklabels=xticklabels, yticklabels=yticklabels, linewidths=0.5,
                cbar_kws={"label": cbar_label} if cbar_label else None)
    return ax


def label_points(ax, x, y, labels: Sequence[str], *, fontsize: float = 9):
    """Label scatter points without the labels colliding or leaving the axes.

    Each label starts just above and to the right of its point (to the left where it would
    leave the axes); while its box overlaps a label already placed, or leaves the axes, it is
    moved by one line at a time, alternately down and up, and a moved label is joined to its
    point by a thin line. Works at any data scale
    (boxes are measured in display pixels). :func:`finish` places the labels again after the
    figure's final layout, so they stay clear of each other at the size the book shows.
    """
    import numpy as np

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    _LABELS.setdefault(ax, []).append({"x": xs, "y": ys, "labels": [str(v) for v in labels],
                                       "fontsize": fontsize, "artists": []})
    _place_labels(ax)
    return ax


#: The point labels of each axes (label_points), placed again by finish after the layout.
_LABELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _place_labels(ax) -> None:
    import numpy as np

    ax.autoscale_view()  # place against the final limits of what is drawn so far
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = []
    for group in _LABELS.get(ax, []):
        for artist in group["artists"]:
            artist.remove()
        group["artists"] = []
        xs, ys = group["x"], group["y"]
        for i in np.argsort(-ys, kind="stable"):
            dx, dy = 4.0, 4.0
            text = ax.annotate(group["labels"][i], xy=(xs[i], ys[i]), xytext=(dx, dy),
                               textcoords="offset points", fontsize=group["fontsize"])
            text.set_in_layout(False)  # labels follow the layout; they do not move it
            group["artists"].append(text)
            box = text.get_window_extent(renderer)
            if box.x1 > frame.x1:  # would leave the axes on the right: put it on the left
                dx = -4.0
                text.set_position((dx, dy))
                text.set_horizontalalignment("right")
                box = text.get_window_extent(renderer)
            step = box.height * 72.0 / ax.figure.dpi * 1.15
            # try one line down, one up, two down, two up, ...: the first free place that
            # stays inside the axes
            for k in range(1, 60):
                inside = box.y0 >= frame.y0 and box.y1 <= frame.y1
                if inside and not any(box.overlaps(other) for other in placed):
                    break
                dy = 4.0 + (-1) ** k * ((k + 1) // 2) * step
                text.set_position((dx, dy))
                box = text.get_window_extent(renderer)
            if dy != 4.0:
                line = ax.annotate("", xy=(xs[i], ys[i]), xytext=(dx, dy + step / 3),
                                   textcoords="offset points",
                                   arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5})
                line.set_in_layout(False)
                group["artists"].append(line)
            placed.append(box)


# --- the figure check ------------------------------------------------------------------------

#: Width, in CSS pixels, at which the book shows a figure in a 1,400-pixel window (measured in
#: chromium: the article column of sphinx-book-theme). A wider figure is scaled down to it.
COLUMN_PX = 784
#: The smallest font, in points at the displayed size, that a figure may use.
MIN_FONT_PT = 9.0
#: Every figure the notebook has checked: glue key -> the problems found (empty when none).
CHECKED: dict[str, list[str]] = {}


def _drawn_texts(fig) -> list:
    """The text artists that drawing ``fig`` actually renders (non-empty, visible, in view)."""
    from matplotlib.text import Text

    drawn = []
    original = Text.draw

    def record(self, renderer):
        original(self, renderer)
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)

    Text.draw = record
    try:
        fig.canvas.draw()
    finally:
        Text.draw = original
    return drawn


def figsize(width: float, height: float) -> tuple[float, float]:
    """A figure size, in inches, that the book shows at its own size: the width is capped at
    the column (:data:`COLUMN_PX` at 100 dpi) and the height kept, so that a wide grid of
    panels gets taller panels rather than smaller fonts."""
    return min(float(width), COLUMN_PX / 100.0), float(height)


def _thin_log_minor_labels(fig) -> None:
    """On every log axis, drop the labels of the minor ticks (2×10⁰, 3×10⁰, …), which
    matplotlib adds on short log ranges and which collide; where no decade is in view, label
    1, 2 and 5 times a power of ten instead."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

    for ax in fig.axes:
        for axis, lims in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() != "log":
                continue
            lo, hi = sorted(lims)
            axis.set_minor_formatter(NullFormatter())
            if not [t for t in axis.get_majorticklocs() if lo <= t <= hi]:
                axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))


def figure_problems(fig, column_px: int = COLUMN_PX, min_pt: float = MIN_FONT_PT) -> list[str]:
    """What makes ``fig`` hard to read in the book, each as one line (empty when nothing):

    * a text smaller than ``min_pt`` points at the size the book displays it (a figure wider
      than ``column_px`` pixels is scaled down to that width);
    * two texts whose boxes overlap (tick labels, titles, legends, annotations);
    * an annotation that runs outside its axes;
    * a literal ``^`` or ``_`` outside ``$...$`` (a symbol that should be mathtext).
    """
    texts = _drawn_texts(fig)
    renderer = fig.canvas.get_renderer()
    tight = fig.get_tightbbox(renderer)  # in inches, what savefig(bbox_inches="tight") keeps
    width_px = tight.width * fig.dpi
    scale = min(1.0, column_px / width_px) if width_px > 0 else 1.0
    problems = []
    boxes = []
    for t in texts:
        label = t.get_text().strip().replace("\n", " ")
        shown = t.get_fontsize() * scale
        if shown < min_pt - 1e-6:
            problems.append(f"text {label!r} is {shown:.1f} pt as displayed "
                            f"({t.get_fontsize():g} pt in a {width_px:.0f}-px-wide figure "
                            f"shown at {min(width_px, column_px):.0f} px); at least {min_pt:g}")
        plain = re.sub(r"\$[^$]*\$", "", t.get_text())
        if re.search(r"\w\^|\w_\{|\^\{|[^\x00-\x7f]_\w", plain):
            problems.append(f"text {label!r} shows a literal caret or underscore: write the "
                            "symbol as mathtext ($...$)")
        box = t.get_window_extent(renderer)
        boxes.append(box)
        ax = getattr(t, "axes", None)
        if ax is not None and t in ax.texts:
            inside = ax.get_window_extent(renderer)
            if (box.x0 < inside.x0 - 1 or box.x1 > inside.x1 + 1 or box.y0 < inside.y0 - 1
                    or box.y1 > inside.y1 + 1):
                problems.append(f"annotation {label!r} runs outside its axes")
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            a, b = boxes[i], boxes[j]
            # overlap by more than a pixel in both directions (touching boxes are fine)
            dx = min(a.x1, b.x1) - max(a.x0, b.x0)
            dy = min(a.y1, b.y1) - max(a.y0, b.y0)
            if dx > 1 and dy > 1:
                problems.append(f"texts {texts[i].get_text().strip()!r} and "
                                f"{texts[j].get_text().strip()!r} overlap")
    return list(dict.fromkeys(problems))


def finish(fig, key: str):
    """Fit ``fig`` to the book's column, lay it out, check it (:func:`figure_problems`) and
    record the result under ``key`` (its glue key) in :data:`CHECKED`, which the notebook's
    claims record carries.

    A figure wider than the column is scaled down to it (aspect kept), so that its fonts are
    shown at the sizes the theme sets. Problems are printed, not raised: a figure that reads
    badly at some parameters must not cost a run's results; the smoke-book test fails on any.
    Returns ``fig``."""
    width, height = fig.get_size_inches()
    column_in = COLUMN_PX / fig.dpi
    if width > column_in:  # a size computed past plots.figsize: shrink, keeping the aspect
        fig.set_size_inches(column_in, height * column_in / width)
    _thin_log_minor_labels(fig)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    for ax in fig.axes:
        if ax in _LABELS:
            _place_labels(ax)
            del _LABELS[ax]
    problems = figure_problems(fig)
    CHECKED[key] = problems
    for line in problems:
        print(f"figure {key}: {line}")
    return fig
