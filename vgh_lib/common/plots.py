"""The book's figure style and the plotting helpers that more than one notebook uses.

One theme and one colour-blind-safe palette, set in one place: call :func:`set_theme` once at
the top of a notebook. The palette is seaborn's ``colorblind`` (Okabe-Ito-like), so hues stay
distinguishable under the common colour-vision deficiencies. Every helper draws on a given
``matplotlib`` axis and returns it; captions (with their provenance) stay in the chapters.
"""

from __future__ import annotations

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

    sns.set_theme(context=CONTEXT, style=STYLE, palette=PALETTE_NAME,
                  rc={"figure.dpi": 100, "savefig.dpi": 100, "axes.titlesize": "medium",
                      "figure.autolayout": False})


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


def heatmap(ax, matrix, *, xticklabels="auto", yticklabels="auto", fmt: str = ".2f",
            cmap: str = "viridis", vmin=None, vmax=None, cbar_label: str | None = None):
    """An annotated heatmap of a 2-D grid (a perceptually uniform, colour-blind-safe map)."""
    import seaborn as sns

    sns.heatmap(matrix, ax=ax, annot=True, fmt=fmt, cmap=cmap, vmin=vmin, vmax=vmax,
                xticklabels=xticklabels, yticklabels=yticklabels, linewidths=0.5,
                cbar_kws={"label": cbar_label} if cbar_label else None)
    return ax


def label_points(ax, x, y, labels: Sequence[str], *, fontsize: float = 8):
    """Label scatter points without the labels colliding.

    Each label starts just above and to the right of its point; while its box overlaps a label
    already placed it is moved down by one line, and a moved label is joined to its point by a
    thin line. Works at any data scale (boxes are measured in display pixels).
    """
    import numpy as np

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) == 0:
        return ax
    ax.autoscale_view()  # place against the final limits of what is drawn so far
    renderer = ax.figure.canvas.get_renderer()
    placed = []
    for i in np.argsort(-ys, kind="stable"):
        dx, dy = 4.0, 4.0
        text = ax.annotate(str(labels[i]), xy=(xs[i], ys[i]), xytext=(dx, dy),
                           textcoords="offset points", fontsize=fontsize)
        box = text.get_window_extent(renderer)
        step = box.height * 72.0 / ax.figure.dpi * 1.15
        for _ in range(50):
            if not any(box.overlaps(other) for other in placed):
                break
            dy -= step
            text.set_position((dx, dy))
            box = text.get_window_extent(renderer)
        if dy != 4.0:
            ax.annotate("", xy=(xs[i], ys[i]), xytext=(dx, dy + step / 3),
                        textcoords="offset points",
                        arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5})
        placed.append(box)
    return ax
