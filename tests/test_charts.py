"""The charts eval_all draws to compare settings (proxyclip/shell/charts.py): bars where numbers are, nothing where
they are not, the published tick only where a published value is given, points placed by their numbers."""
import numpy as np

from proxyclip.shell.charts import cost_chart, methods_chart

RED, BLUE, GREEN = (200, 0, 0), (0, 0, 200), (0, 160, 0)
COLOURS = {"a": RED, "b": BLUE, "c": GREEN}


def where(chart, colour):
    """(rows, columns) of the pixels of exactly `colour`."""
    return np.nonzero((chart == np.asarray(colour, np.uint8)).all(axis=-1))


def test_bars_stand_where_their_numbers_say():
    chart = methods_chart(["VOC21", "ADE20K"], ["a", "b"], {"a": {"VOC21": 80.0, "ADE20K": 20.0}, "b": {"VOC21": 40.0}},
                          colours=COLOURS)
    assert chart.ndim == 3 and chart.shape[2] == 3 and chart.dtype == np.uint8 and min(chart.shape[:2]) > 100
    a_rows, a_cols = where(chart, RED)
    b_rows, b_cols = where(chart, BLUE)
    legend_end = 40                                             # the swatches of the legend are in the first rows
    a_cols, a_rows = a_cols[a_rows > legend_end], a_rows[a_rows > legend_end]
    b_cols, b_rows = b_cols[b_rows > legend_end], b_rows[b_rows > legend_end]
    # two red bars (VOC21, then ADE20K), one blue bar beside the first red one, inside VOC21's group
    split = (a_cols.min() + a_cols.max()) / 2
    voc_a, ade_a = a_rows[a_cols < split], a_rows[a_cols > split]
    assert a_cols[a_cols < split].max() < b_cols.min() and b_cols.max() < a_cols[a_cols > split].min()
    bottom = voc_a.max()
    assert ade_a.max() == b_rows.max() == bottom                 # all stand on the axis
    # the filled rows of a bar of height h (outline excluded): h - 2, from its top + 1
    heights = {"a VOC21": bottom - voc_a.min() + 3, "a ADE20K": bottom - ade_a.min() + 3, "b VOC21": bottom - b_rows.min() + 3}
    assert abs(heights["a VOC21"] - 2 * heights["b VOC21"]) <= 2 and abs(heights["a VOC21"] - 4 * heights["a ADE20K"]) <= 4


def test_a_missing_number_draws_no_bar():
    with_b = methods_chart(["VOC21"], ["a", "b"], {"a": {"VOC21": 50.0}, "b": {"VOC21": 30.0}}, colours=COLOURS)
    without_b = methods_chart(["VOC21"], ["a", "b"], {"a": {"VOC21": 50.0}, "b": {"VOC21": None}}, colours=COLOURS)
    absent_b = methods_chart(["VOC21"], ["a", "b"], {"a": {"VOC21": 50.0}}, colours=COLOURS)
    rows, cols = where(with_b, BLUE)
    keep = rows > 40                                            # b's bar, below the legend
    slot = (slice(41, rows[keep].max() + 2), slice(cols[keep].min() - 1, cols[keep].max() + 2))   # its outline too
    for chart in (without_b, absent_b):
        assert chart.shape == with_b.shape and where(chart, RED)[0].max() > 60
        assert where(chart, BLUE)[0].max() < 40                 # only the legend's swatch
        drawn = {tuple(c) for c in chart[slot].reshape(-1, 3)}
        assert (90, 90, 90) not in drawn                        # no outline: not even a bar of zero


def test_failed_cells_are_marked_as_the_table_marks_them(tmp_path):
    """Every run failed: not empty axes but the table's word, "failed" in red, upright where each bar would be; a
    missing cell's word in grey, no red (summary cells through pictures.write_pictures, as eval_all draws them)."""
    from PIL import Image

    from proxyclip.commands.pictures import write_pictures

    def reds(chart):                                            # red text, antialiased: the rows and columns it covers
        chart = chart[40:].astype(int)                          # below the legend
        rows, cols = np.nonzero((chart[..., 0] > 150) & (chart[..., 1] < 120) & (chart[..., 2] < 120))
        return rows, cols

    titles = {"voc21": "VOC21", "voc20": "VOC20"}
    cells = {"voc21": "failed: ValueError: boom", "voc20": "failed: out of memory"}
    write_pictures(tmp_path, list(titles), [{"setting": "a", "mIoU": cells, "avg8": None}], titles)
    rows, cols = reds(np.asarray(Image.open(tmp_path / "methods.png").convert("RGB")))
    left, right = cols[cols < cols.mean()], cols[cols > cols.mean()]     # one word in each benchmark's group
    assert len(left) > 20 and len(right) > 20
    for word in (left, right):
        assert word.max() - word.min() < 16                     # as wide as a bar ...
    assert rows.max() - rows.min() > 20                         # ... and upright, standing on the axis
    missing = methods_chart(["VOC21"], ["a"], {"a": {"VOC21": "missing"}}, colours={"a": BLUE})
    nothing = methods_chart(["VOC21"], ["a"], {"a": {"VOC21": None}}, colours={"a": BLUE})
    assert len(reds(missing)[0]) == 0 and (missing != nothing).any()


def black_in_bar(chart, colour):
    """Rows of pure black pixels in the columns of `colour`'s bar, between the legend and the axis (the bar's outline is
    grey, the gridlines light grey: only the published tick is black there)."""
    rows, cols = where(chart, colour)
    keep = rows > 40
    rows, cols = rows[keep], cols[keep]
    region = chart[40: rows.max() + 1, cols.min(): cols.max() + 1]
    return np.nonzero((region == 0).all(axis=-1))[0] + 40


def test_the_published_tick_is_drawn_only_where_a_value_is_published():
    miou = {"a": {"VOC21": 60.0}, "b": {"VOC21": 60.0}}
    plain = methods_chart(["VOC21"], ["a", "b"], miou, colours=COLOURS)
    marked = methods_chart(["VOC21"], ["a", "b"], miou, {"a": {"VOC21": 30.0}}, colours=COLOURS)
    assert len(black_in_bar(plain, RED)) == 0 and len(black_in_bar(plain, BLUE)) == 0
    assert len(black_in_bar(marked, BLUE)) == 0
    ticks = black_in_bar(marked, RED)
    rows = where(marked, RED)[0]
    top, bottom = rows[rows > 40].min(), rows.max()
    assert len(ticks) > 0 and abs(ticks.mean() - (top + bottom) / 2) <= 3     # 30 on a bar of 60: half way up


def centre(chart, colour):
    rows, cols = where(chart, colour)
    return cols.mean(), rows.mean()


def test_points_sit_at_their_speed_and_miou():
    linear = cost_chart([("a", 1.0, 40.0), ("b", 5.0, 20.0), ("c", 3.0, 30.0)], "avg8", colours=COLOURS)
    assert linear.ndim == 3 and linear.shape[2] == 3 and linear.dtype == np.uint8
    (ax, ay), (bx, by), (cx, cy) = (centre(linear, c) for c in (RED, BLUE, GREEN))
    assert ax < cx < bx and ay < cy < by                       # faster to the right, better higher
    assert abs((cx - ax) - (bx - ax) / 2) <= 2                 # 3 is half way from 1 to 5
    logarithmic = cost_chart([("a", 1.0, 40.0), ("b", 100.0, 20.0), ("c", 10.0, 30.0)], "avg8", colours=COLOURS)
    (ax, _), (bx, _), (cx, _) = (centre(logarithmic, c) for c in (RED, BLUE, GREEN))
    assert abs((cx - ax) - (bx - ax) / 2) <= 2                 # over 10x: 10 is half way from 1 to 100


def test_the_cost_chart_averages_what_every_plotted_setting_has():
    """avg8 when every setting with images/s has it, else the mean over the benchmarks they all have, named; a setting
    without images/s is not plotted, and with none there is nothing to draw."""
    from proxyclip.commands.pictures import cost_points

    titles = {"voc21": "VOC21", "voc20": "VOC20", "ade20k": "ADE20K"}
    rows = [{"setting": "a", "mIoU": {"voc21": 60.0, "voc20": 80.0, "ade20k": 20.0}, "avg8": None, "cost": {"images_per_s": 4.0}},
            {"setting": "b", "mIoU": {"voc21": 50.0, "voc20": 70.0, "ade20k": "failed: out of memory"}, "avg8": None,
             "cost": {"images_per_s": 8.0}},
            {"setting": "c", "mIoU": {"voc21": 10.0}, "avg8": None}]
    assert cost_points(list(titles), rows, titles) == ([("a", 4.0, 70.0), ("b", 8.0, 60.0)], "mean over VOC21, VOC20")
    complete = [{**row, "avg8": 33.0} for row in rows[:2]]
    assert cost_points(list(titles), complete, titles) == ([("a", 4.0, 33.0), ("b", 8.0, 33.0)], "avg8")
    assert cost_points(list(titles), rows[2:], titles) == "no setting has images/s (summary rows' cost)"
