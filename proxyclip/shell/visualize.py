"""Pictures of label maps for people: benchmark palettes, comparison panels, overlays, the per-class IoU chart.

Palettes: Cityscapes' own 19 colours; PASCAL VOC's colour map for VOC and PASCAL Context (shifted by one where the
background is ignored: VOC20, Context59); elsewhere (COCO, ADE, your own images) VOC's 21 colours, then hues spaced
by the golden ratio, fixed per class index. Ignored pixels are white and named "ignored" in legends.
Text is drawn in a font that has its characters (fonts.py); what none has is drawn as "?", never as an empty box.
"""
from __future__ import annotations

import colorsys
import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .fonts import drawable, text_font

IGNORED = (255, 255, 255)
ROW = 14                       # legend / chart row height in pixels (the default bitmap font is 11 px)
MIN_SIDE = 160                 # smaller pictures are enlarged (nearest neighbour) so that they can be read,
MAX_SIDE = 1024                # as long as their longer side stays within this
CITYSCAPES = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
              (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
              (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)]
_VOC_PALETTE_SETS = {"voc21": 0, "context60": 0, "pc459": 0, "voc20": 1, "context59": 1}  # name -> first VOC index


def voc_colormap(num_classes: int) -> np.ndarray:
    """PASCAL VOC's colour map (the bits of the index spread over R, G and B): [num_classes, 3] uint8."""
    colours = np.zeros((num_classes, 3), np.uint8)
    for i in range(num_classes):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours[i] = (r, g, b)
    return colours


def palette(num_classes: int, dataset: str = "") -> np.ndarray:
    """[num_classes, 3] uint8 colours, the same for the same class of the same benchmark in every picture."""
    if dataset == "cityscapes" and num_classes == len(CITYSCAPES):
        return np.asarray(CITYSCAPES, np.uint8)
    if dataset in _VOC_PALETTE_SETS:
        first = _VOC_PALETTE_SETS[dataset]
        return voc_colormap(num_classes + first)[first:]
    colours = [tuple(c) for c in voc_colormap(min(num_classes, 21))]
    for i in range(len(colours), num_classes):
        hue = (i * 0.618033988749895) % 1.0
        colours.append(tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.55 + 0.45 * (i % 2), 0.95 - 0.3 * (i % 3 == 0))))
    return np.asarray(colours, dtype=np.uint8).reshape(-1, 3)


def colorize(labels: np.ndarray, colours: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """[H, W] labels -> [H, W, 3] uint8; ignored pixels white."""
    out = colours[np.clip(labels, 0, len(colours) - 1)]
    if ignore_index is not None:
        out[labels == ignore_index] = IGNORED
    return out


def enlarge(array: np.ndarray, scale: int) -> np.ndarray:
    return array if scale == 1 else np.repeat(np.repeat(array, scale, axis=0), scale, axis=1)


def display_scale(height: int, width: int) -> int:
    """The integer enlargement that brings the shorter side to MIN_SIDE pixels without the longer passing MAX_SIDE."""
    return max(1, min(math.ceil(MIN_SIDE / max(1, min(height, width))), MAX_SIDE // max(1, height, width)))


def legend_panel(names: Sequence[str], colours: Sequence, height: int = 0, width: int = 0) -> np.ndarray:
    """A white panel [H, W, 3] with a swatch and a name per entry: beside a picture, `height` high (at least a few
    rows) in as many columns as that needs; below a wide picture, `width` wide in as many rows as that needs."""
    font = text_font(names)
    names = [drawable(n, font) for n in names]
    column_width = 22 + max((int(font.getlength(n)) for n in names), default=0)
    if width:
        columns = max(1, (width - 8) // column_width)
        height = ROW * -(-len(names) // columns) + 8
    height = max(height, ROW * min(len(names), 6) + 8)
    rows = max(1, (height - 8) // ROW)
    columns = max(1, -(-len(names) // rows))
    panel = Image.new("RGB", (8 + columns * column_width, height), "white")
    draw = ImageDraw.Draw(panel)
    for i, (name, colour) in enumerate(zip(names, colours)):
        x, y = 4 + (i // rows) * column_width, 4 + (i % rows) * ROW
        draw.rectangle([x, y + 1, x + 14, y + ROW - 2], fill=tuple(int(c) for c in colour), outline="black")
        draw.text((x + 18, y), name, fill="black", font=font)
    return np.asarray(panel)


def _side_by_side(tiles: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Tiles left to right on white, top-aligned, with `gap` pixels between them."""
    height = max(t.shape[0] for t in tiles)
    padded = []
    for i, tile in enumerate(tiles):
        if tile.shape[0] < height:
            tile = np.concatenate([tile, np.full((height - tile.shape[0], tile.shape[1], 3), 255, np.uint8)])
        padded += ([np.full((height, gap, 3), 255, np.uint8)] if i else []) + [tile]
    return np.concatenate(padded, axis=1)


def _titled(tile: np.ndarray, title: str) -> np.ndarray:
    """`tile` under a white strip with `title` centred in it."""
    font = text_font([title])
    title = drawable(title, font)
    strip = Image.new("RGB", (tile.shape[1], ROW + 4), "white")
    draw = ImageDraw.Draw(strip)
    draw.text(((tile.shape[1] - font.getlength(title)) / 2, 2), title, fill="black", font=font)
    return np.concatenate([np.asarray(strip), tile])


def overlay(image: np.ndarray, labels: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """[H, W, 3] uint8 image blended with its coloured labels."""
    blend = (1 - alpha) * image.astype(np.float32) + alpha * colorize(labels, colours).astype(np.float32)
    return blend.round().astype(np.uint8)


def overlay_with_legend(image: np.ndarray, labels: np.ndarray, names: Sequence[str], colours: np.ndarray,
                        alpha: float = 0.5) -> np.ndarray:
    """The overlay (enlarged when small) and, to its right, a legend of the classes present with their pixel shares."""
    present, pixel_counts = np.unique(labels, return_counts=True)
    shown = [f"{names[i]} ({100 * n / labels.size:.1f}%)" for i, n in zip(present, pixel_counts)]
    picture = enlarge(overlay(image, labels, colours, alpha), display_scale(*labels.shape))
    return _side_by_side([picture, legend_panel(shown, colours[present], picture.shape[0])], gap=0)


def comparison_panel(image: np.ndarray, label: np.ndarray, pred: np.ndarray, names: Sequence[str],
                     ignore_index: int, colours: np.ndarray) -> np.ndarray:
    """image | ground truth | prediction under column titles, then a legend of the classes shown (and "ignored")."""
    valid = (label != ignore_index) & (label < len(names))
    shown = np.union1d(np.unique(label[valid]), np.unique(pred)).astype(int)
    entries, entry_colours = [names[i] for i in shown], [colours[i] for i in shown]
    if (label == ignore_index).any():
        entries, entry_colours = entries + ["ignored"], entry_colours + [IGNORED]
    scale = display_scale(*label.shape)
    tiles = [_titled(enlarge(tile, scale), title) for tile, title in
             ((image, "image"), (colorize(label, colours, ignore_index), "ground truth"), (colorize(pred, colours), "prediction"))]
    row = _side_by_side(tiles)
    if row.shape[1] > 4 * row.shape[0]:                   # a wide picture: the legend goes below, across its width
        legend = legend_panel(entries, entry_colours, width=row.shape[1])
        legend = np.concatenate([legend, np.full((legend.shape[0], row.shape[1] - legend.shape[1], 3), 255, np.uint8)], axis=1)
        return np.concatenate([row, legend])
    return _side_by_side([row, legend_panel(entries, entry_colours, tiles[0].shape[0])])


def iou_bar_chart(names: Sequence[str], ious: Sequence[float | None], title: str = "", colours: np.ndarray | None = None,
                  most: int = 60) -> np.ndarray:
    """Per-class IoU (%) as horizontal bars, sorted from best to worst, over a 0-100 axis with gridlines.

    More than `most` classes: the best and the worst `most // 2`, and a line saying how many are left out (all of
    them are in per_class.csv). Classes whose IoU is undefined (absent and never predicted) are counted, not drawn.
    """
    font = text_font([title, *names])
    title, names = drawable(title, font), [drawable(n, font) for n in names]
    colours = palette(len(names)) if colours is None else colours
    defined = sorted(((iou, i) for i, iou in enumerate(ious) if iou is not None), key=lambda item: -item[0])
    undefined = len(names) - len(defined)
    rows: list[tuple[float, int] | None] = list(defined)
    if len(defined) > most:
        rows = defined[: most // 2] + [None] + defined[-(most // 2):]
    bar_width, label_width = 400, 8 + max((int(font.getlength(names[i])) for _, i in defined), default=40)
    top, height = 40, 40 + ROW * len(rows) + 36
    chart = Image.new("RGB", (label_width + bar_width + 60, height), "white")
    draw = ImageDraw.Draw(chart)
    draw.text((4, 4), title, fill="black", font=font)
    notes = [f"{len(defined)} class{'es' if len(defined) != 1 else ''} sorted by IoU"]
    if len(defined) > most:
        notes.append(f"the best and worst {most // 2} shown (per_class.csv has all)")
    if undefined:
        notes.append(f"{undefined} without IoU (absent, never predicted)")
    draw.text((4, 18), "; ".join(notes), fill="gray", font=font)
    bottom = top + ROW * len(rows)
    for tick in range(0, 101, 20):                                    # the axis: gridlines and a labelled scale
        x = label_width + bar_width * tick // 100
        draw.line([x, top - 2, x, bottom], fill=(225, 225, 225))
        draw.line([x, bottom, x, bottom + 4], fill="black")
        draw.text((x - font.getlength(str(tick)) / 2, bottom + 6), str(tick), fill="black", font=font)
    draw.line([label_width, bottom, label_width + bar_width, bottom], fill="black")
    draw.text((label_width + bar_width / 2 - 20, bottom + 20), "IoU (%)", fill="black", font=font)
    for row, item in enumerate(rows):
        y = top + row * ROW
        if item is None:
            between = len(defined) - 2 * (most // 2)
            draw.text((4, y), f"... {between} class{'es' if between != 1 else ''} between", fill="gray", font=font)
            continue
        iou, i = item
        draw.text((4, y), names[i], fill="black", font=font)
        length = int(round(bar_width * max(0.0, min(iou, 100.0)) / 100.0))
        draw.rectangle([label_width, y + 2, label_width + max(length, 1), y + ROW - 3], fill=tuple(int(c) for c in colours[i]),
                       outline=(90, 90, 90))
        draw.text((label_width + length + 4, y), f"{iou:.1f}", fill="black", font=font)
    return np.asarray(chart)
