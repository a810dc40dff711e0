"""Each plotting helper of vgh_lib.common.plots draws (a smoke test, no display needed)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vgh_lib.common import plots  # noqa: E402


@pytest.fixture(autouse=True)
def _theme():
    plots.set_theme()
    yield
    plt.close("all")
    matplotlib.rcdefaults()


def test_palette_is_colour_blind_safe_and_cycles():
    import seaborn as sns

    assert plots.palette(3) == sns.color_palette("colorblind", 3)
    assert len(plots.palette(12)) == 12


def test_band_draws_line_and_interval():
    fig, ax = plt.subplots()
    x = np.arange(5)
    plots.band(ax, x, x * 1.0, x - 0.5, x + 0.5, label="mean")
    assert len(ax.lines) == 1 and len(ax.collections) == 1


def test_intervals_draws_one_row_per_label():
    fig, ax = plt.subplots()
    plots.intervals(ax, ["a", "b", "c"], [0.1, 0.5, 0.9], [0.0, 0.4, 0.7], [0.2, 0.6, 1.0],
                    reference=0.5)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]


def test_heatmap_annotates_every_cell():
    fig, ax = plt.subplots()
    plots.heatmap(ax, np.arange(6).reshape(2, 3) / 6, xticklabels=["x", "y", "z"],
                  yticklabels=["p", "q"], cbar_label="cosine")
    assert len(ax.texts) == 6


def test_label_points_do_not_collide():
    fig, ax = plt.subplots()
    x = np.array([0.0, 0.01, 0.02, 1.0])
    y = np.array([1.0, 1.0, 1.001, 0.0])
    ax.scatter(x, y)
    plots.label_points(ax, x, y, ["1194", "1893", "2000", "10"])
    fig.canvas.draw()
    texts = [t for t in ax.texts if t.get_text()]
    boxes = [t.get_window_extent() for t in texts]
    assert sorted(t.get_text() for t in texts) == ["10", "1194", "1893", "2000"]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
