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


def _problems_about(fig, word):
    return [p for p in plots.figure_problems(fig) if word in p]


def test_figure_check_finds_overlapping_tick_labels_and_passes_spaced_ones():
    labels = ["before GRPO", "after, seed 0", "after, seed 1", "after, seed 2"]
    fig, ax = plt.subplots(figsize=(2.5, 2.5))
    ax.bar(labels, [1, 2, 3, 4])
    assert _problems_about(fig, "overlap")
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(labels, [1, 2, 3, 4])  # one label per row: no two share a line
    assert plots.figure_problems(fig) == []


def test_figure_check_measures_fonts_at_the_displayed_size():
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([0, 1], label="a line")
    ax.legend(fontsize=6)
    assert any("'a line' is 6.0 pt" in p for p in plots.figure_problems(fig))
    ax.legend(fontsize=10)
    assert plots.figure_problems(fig) == []
    # the same 11-pt ticks in a figure twice the column's width are shown at about 5 pt
    wide, ax = plt.subplots(figsize=(2 * plots.COLUMN_PX / 100, 3))
    ax.plot([0, 1])
    assert _problems_about(wide, "pt as displayed")


def test_figure_check_wants_mathtext_for_symbols():
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.set_xlabel("costate λ^D")
    assert _problems_about(fig, "literal caret")
    ax.set_xlabel("costate $\\lambda^D$")
    assert plots.figure_problems(fig) == []


def test_figure_check_finds_an_annotation_outside_its_axes():
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.set_xlim(0, 1)
    ax.annotate("step 3000", xy=(0.98, 0.5), xytext=(6, 0), textcoords="offset points")
    assert _problems_about(fig, "outside its axes")


def test_finish_records_the_check_under_the_glue_key():
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.set_title("λ^D")
    plots.finish(fig, "test.fig")
    assert plots.CHECKED.pop("test.fig") and "literal caret" in plots.figure_problems(fig)[0]


def test_point_labels_are_placed_again_after_the_layout_and_stay_inside():
    fig, ax = plt.subplots(figsize=(9, 3))  # wider than the column: finish shrinks it
    x = np.linspace(0, 1, 12)
    ax.plot(x, np.zeros_like(x), "o")
    plots.label_points(ax, x, np.zeros_like(x), [f"task {i}" for i in range(12)])
    ax.set_xlabel("x")
    plots.finish(fig, "test.labels")
    assert plots.CHECKED.pop("test.labels") == []
    assert fig.get_size_inches()[0] == pytest.approx(plots.COLUMN_PX / 100)


def test_figsize_caps_the_width_at_the_column_and_keeps_the_height():
    assert plots.figsize(11, 4.2) == (plots.COLUMN_PX / 100, 4.2)
    assert plots.figsize(6, 3) == (6.0, 3.0)
