"""Charts that compare settings (methods, presets): mIoU per benchmark as grouped bars, mIoU against speed.

Plain data in, an [H, W, 3] uint8 picture out, drawn with PIL in visualize.py's style (white ground, grey gridlines,
the fonts of fonts.py). A setting has one colour in both charts (`setting_colours`). A cell without a number is never
a bar of zero: where its bar would be, the word the table's cell starts with, upright ("failed" in red; "missing",
"kept", "unsupported", "nan" in grey), or a grey "-" where the setting has no result for that benchmark at all.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .fonts import drawable, text_font
from .visualize import ROW, palette

BAR = 14                    # bar width, pixels
GROUP_GAP = 18              # between two benchmarks' bar groups
PLOT_HEIGHT = 240           # the value axis of the bar chart; the scatter's plot is PLOT_HEIGHT x SCATTER_WIDTH
SCATTER_WIDTH = 420
LEFT, BOTTOM = 48, 40       # room for the value labels and, below the plot, the tick labels and the axis title
MARKER = (0, 0, 0)          # the published value's tick
MISSING = (150, 150, 150)
FAILED = (205, 30, 30)      # a failed run's word: the cell a reader must not miss
GRID = (225, 225, 225)


def setting_colours(settings: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """One colour per setting, in order: VOC's colours without its black (the published marker is black)."""
    colours = palette(len(settings) + 1)[1:]
    return {s: tuple(int(c) for c in colour) for s, colour in zip(settings, colours)}


def nice_step(span: float, ticks: int = 6) -> float:
    """1, 2 or 5 times a power of ten, giving about `ticks` intervals over `span`."""
    raw = max(span, 1e-9) / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _legend(draw: ImageDraw.ImageDraw, font, x0: int, y0: int, width: int,
            entries: list[tuple[str, tuple | None]]) -> int:
    """Swatch + name per entry, left to right, wrapped at `width`; a None colour draws the published marker. Returns
    the y below the last row."""
    x, y = x0, y0
    for name, colour in entries:
        size = 22 + int(font.getlength(name)) + 10
        if x > x0 and x + size > x0 + width:
            x, y = x0, y + ROW
        if colour is None:
            draw.rectangle([x, y + ROW // 2 - 1, x + 14, y + ROW // 2], fill=MARKER)
        else:
            draw.rectangle([x, y + 1, x + 14, y + ROW - 2], fill=colour, outline="black")
        draw.text((x + 18, y), name, fill="black", font=font)
        x += size
    return y + ROW


def _upright(chart: Image.Image, font, word: str, x: int, bottom: int, colour: tuple) -> None:
    """`word` read bottom to top, centred on the slot that starts at `x`, standing on the axis at `bottom`."""
    strip = Image.new("RGB", (int(font.getlength(word)) + 4, ROW), "white")
    ImageDraw.Draw(strip).text((2, 0), word, fill=colour, font=font)
    upright = strip.rotate(90, expand=True)
    chart.paste(upright, (x + (BAR - upright.width) // 2, bottom - 2 - upright.height))


def methods_chart(benchmarks: Sequence[str], settings: Sequence[str],
                  miou: Mapping[str, Mapping[str, float | str | None]],
                  published: Mapping[str, Mapping[str, float]] | None = None, title: str = "mIoU (%) per benchmark",
                  colours: Mapping[str, tuple] | None = None) -> np.ndarray:
    """One bar group per benchmark (`benchmarks`: the keys of miou's rows, drawn as they are), one bar per setting in
    its colour, over a 0..max value axis with gridlines; a published value is a black tick across its setting's bar
    position (there only), named in the legend as not measured here. A value that is a word (the table cell's
    "failed", "missing", ...) is drawn upright in the bar's place; None (no result) is a grey "-"."""
    published = published or {}
    colours = colours or setting_colours(settings)
    words = sorted({v for s in settings for v in miou.get(s, {}).values() if isinstance(v, str)})
    font = text_font([title, *benchmarks, *settings, *words, "published (not measured here)"])
    title, labels = drawable(title, font), [drawable(b, font) for b in benchmarks]
    values = [v for s in settings for v in miou.get(s, {}).values() if isinstance(v, (int, float))]
    values += [v for s in settings for v in published.get(s, {}).values()]
    step = nice_step(max(values, default=10.0))
    top_value = step * max(1, math.ceil(max(values, default=10.0) / step))
    group = max(len(settings) * BAR + GROUP_GAP, max((int(font.getlength(b)) for b in labels), default=0) + 8)
    width = max(LEFT + group * len(benchmarks) + 12, 320)
    entries = [(drawable(s, font), colours[s]) for s in settings]
    if any(published.get(s) for s in settings):
        entries.append(("published (not measured here)", None))
    # the legend's height: drawn once on a scratch canvas
    legend_bottom = _legend(ImageDraw.Draw(Image.new("RGB", (width, 400))), font, 4, 20, width - 8, entries)
    top = legend_bottom + 16
    chart = Image.new("RGB", (width, top + PLOT_HEIGHT + BOTTOM), "white")
    draw = ImageDraw.Draw(chart)
    draw.text((4, 4), title, fill="black", font=font)
    _legend(draw, font, 4, 20, width - 8, entries)

    def y_of(value: float) -> int:
        return top + PLOT_HEIGHT - int(round(PLOT_HEIGHT * min(max(value, 0.0), top_value) / top_value))

    bottom = y_of(0.0)
    tick = 0.0
    while tick <= top_value + 1e-9:                               # the value axis: gridlines and labels
        y, text = y_of(tick), f"{tick:g}"
        draw.line([LEFT, y, width - 8, y], fill=GRID)
        draw.text((LEFT - 6 - font.getlength(text), y - ROW // 2), text, fill="black", font=font)
        tick += step
    draw.text((4, top - ROW - 2), "mIoU (%)", fill="black", font=font)
    draw.line([LEFT, top - 4, LEFT, bottom], fill="black")
    draw.line([LEFT, bottom, width - 8, bottom], fill="black")
    for g, bench in enumerate(benchmarks):
        x0 = LEFT + g * group + (group - len(settings) * BAR) // 2
        for i, setting in enumerate(settings):
            x = x0 + i * BAR
            value = miou.get(setting, {}).get(bench)
            if isinstance(value, str):                              # the table's word for the cell, upright
                _upright(chart, font, drawable(value, font), x, bottom, FAILED if value == "failed" else MISSING)
            elif value is None:                                     # no result: no bar, a grey dash on the axis
                draw.text((x + BAR / 2 - font.getlength("-") / 2, bottom - ROW), "-", fill=MISSING, font=font)
            else:
                draw.rectangle([x + 1, min(y_of(value), bottom - 1), x + BAR - 2, bottom - 1], fill=colours[setting],
                               outline=(90, 90, 90))
            if bench in published.get(setting, {}):
                y = y_of(published[setting][bench])
                draw.rectangle([x - 1, y - 1, x + BAR, y], fill=MARKER)
        label = labels[g]
        draw.text((LEFT + g * group + (group - font.getlength(label)) / 2, bottom + 6), label, fill="black", font=font)
    return np.asarray(chart)


def cost_chart(points: Sequence[tuple[str, float, float]], average_label: str, title: str = "mIoU against speed",
               colours: Mapping[str, tuple] | None = None) -> np.ndarray:
    """One labelled point per (setting, images/s, average mIoU): images/s across (log scale when the fastest is more
    than 10x the slowest, as the axis title says), the average mIoU (%) up, from 0; `average_label` names the
    average (e.g. "avg8")."""
    colours = colours or setting_colours([p[0] for p in points])
    y_title = f"average mIoU (%), {average_label}"
    font = text_font([title, y_title, *(p[0] for p in points)])
    speeds = [p[1] for p in points]
    low, high = min(speeds, default=1.0), max(speeds, default=1.0)
    log = low > 0 and high / low > 10
    if log:
        first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
        last += last == first
        x_ticks = [10.0 ** k for k in range(first, last + 1)]
        span = (float(first), float(last))
    else:
        x_step = nice_step(high or 1.0, 5)
        x_ticks = [x_step * k for k in range(int(math.ceil((high or 1.0) / x_step)) + 1)]
        span = (0.0, x_ticks[-1])
    y_step = nice_step(max((p[2] for p in points), default=10.0), 5)
    y_top = y_step * max(1, math.ceil(max((p[2] for p in points), default=10.0) / y_step))
    x_title = "images/s (log scale)" if log else "images/s"
    left, top = LEFT + ROW + 4, 24
    width, height = left + SCATTER_WIDTH + 120, top + PLOT_HEIGHT + BOTTOM + 4

    def x_of(speed: float) -> int:
        where = math.log10(speed) if log else speed
        return left + int(round(SCATTER_WIDTH * (where - span[0]) / (span[1] - span[0])))

    def y_of(value: float) -> int:
        return top + PLOT_HEIGHT - int(round(PLOT_HEIGHT * min(max(value, 0.0), y_top) / y_top))

    chart = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(chart)
    draw.text((4, 4), drawable(title, font), fill="black", font=font)
    bottom, right = y_of(0.0), left + SCATTER_WIDTH
    for speed in x_ticks:
        x, text = x_of(speed), f"{speed:g}"
        draw.line([x, top, x, bottom], fill=GRID)
        draw.text((x - font.getlength(text) / 2, bottom + 6), text, fill="black", font=font)
    value = 0.0
    while value <= y_top + 1e-9:
        y, text = y_of(value), f"{value:g}"
        draw.line([left, y, right, y], fill=GRID)
        draw.text((left - 6 - font.getlength(text), y - ROW // 2), text, fill="black", font=font)
        value += y_step
    draw.line([left, top, left, bottom], fill="black")
    draw.line([left, bottom, right, bottom], fill="black")
    draw.text((left + (SCATTER_WIDTH - font.getlength(x_title)) / 2, bottom + 22), x_title, fill="black", font=font)
    strip = Image.new("RGB", (int(font.getlength(y_title)) + 4, ROW), "white")   # the value axis's title, upright
    ImageDraw.Draw(strip).text((2, 0), drawable(y_title, font), fill="black", font=font)
    chart.paste(strip.rotate(90, expand=True), (4, max(top, top + (PLOT_HEIGHT - strip.width) // 2)))
    taken: list[tuple[int, int, int, int]] = []                     # label boxes so far: a label moves down past them
    for setting, speed, miou in points:
        x, y = x_of(speed), y_of(miou)
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colours[setting], outline="black")
        name = drawable(setting, font)
        size = int(font.getlength(name))
        lx = x + 7 if x + 7 + size < width - 2 else x - 7 - size
        ly = y - ROW // 2
        while ly < height - ROW and any(lx < b[2] and b[0] < lx + size and ly < b[3] and b[1] < ly + ROW for b in taken):
            ly += ROW // 2
        taken.append((lx, ly, lx + size, ly + ROW))
        draw.text((lx, ly), name, fill="black", font=font)
    return np.asarray(chart)
