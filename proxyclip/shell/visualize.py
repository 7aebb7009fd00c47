"""Pictures of label maps: a fixed palette, colour overlays with a legend panel."""
from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# PASCAL VOC's palette for the first 21 classes (what users of VOC expect), golden-ratio hues after that
_VOC = [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
        (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128),
        (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128)]


def palette(num_classes: int) -> np.ndarray:
    """[num_classes, 3] uint8 colours, the same for the same index in every picture."""
    colours = list(_VOC[:num_classes])
    for i in range(len(colours), num_classes):
        hue = (i * 0.618033988749895) % 1.0
        colours.append(tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.55 + 0.45 * (i % 2), 0.95 - 0.3 * (i % 3 == 0))))
    return np.asarray(colours, dtype=np.uint8).reshape(-1, 3)


def colorize(labels: np.ndarray, colours: np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """[H, W] labels -> [H, W, 3] uint8; ignored pixels white."""
    out = colours[np.clip(labels, 0, len(colours) - 1)]
    if ignore_index is not None:
        out[labels == ignore_index] = 255
    return out


def overlay(image: np.ndarray, labels: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """[H, W, 3] uint8 image blended with its coloured labels."""
    blend = (1 - alpha) * image.astype(np.float32) + alpha * colorize(labels, colours).astype(np.float32)
    return blend.round().astype(np.uint8)


def legend_panel(names: Sequence[str], colours: np.ndarray, height: int, shares: Sequence[float] | None = None) -> np.ndarray:
    """A white panel [height, width, 3] listing colour swatches and class names (and pixel shares)."""
    font = ImageFont.load_default()
    row = 14
    rows = max(1, (height - 8) // row)
    columns = -(-len(names) // rows)
    texts = [name if shares is None else f"{name} ({100 * share:.1f}%)" for name, share in zip(names, shares or [None] * len(names))]
    column_width = 22 + max((int(font.getlength(t)) for t in texts), default=0)
    panel = Image.new("RGB", (8 + columns * column_width, height), "white")
    draw = ImageDraw.Draw(panel)
    for i, text in enumerate(texts):
        x, y = 4 + (i // rows) * column_width, 4 + (i % rows) * row
        draw.rectangle([x, y + 1, x + 14, y + row - 2], fill=tuple(int(c) for c in colours[i]), outline="black")
        draw.text((x + 18, y), text, fill="black", font=font)
    return np.asarray(panel)


def overlay_with_legend(image: np.ndarray, labels: np.ndarray, names: Sequence[str], alpha: float = 0.5) -> np.ndarray:
    """Overlay of the classes present, with a legend of those classes to its right."""
    colours = palette(len(names))
    present, pixel_counts = np.unique(labels, return_counts=True)
    present_names = [names[i] for i in present]
    shares = (pixel_counts / labels.size).tolist()
    panel = legend_panel(present_names, colours[present], image.shape[0], shares)
    return np.concatenate([overlay(image, labels, colours, alpha), panel], axis=1)


def comparison_panel(image: np.ndarray, label: np.ndarray, pred: np.ndarray, names: Sequence[str],
                     ignore_index: int) -> np.ndarray:
    """image | ground truth | prediction, side by side, with a legend of the classes shown (ignore = white)."""
    colours = palette(len(names))
    shown = np.union1d(np.unique(label[(label != ignore_index) & (label < len(names))]), np.unique(pred))
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    legend = legend_panel([names[i] for i in shown], colours[shown], image.shape[0])
    tiles = [image, gap, colorize(label, colours, ignore_index), gap, colorize(pred, colours), gap, legend]
    return np.concatenate(tiles, axis=1)


def iou_bar_chart(names: Sequence[str], ious: Sequence[float | None], title: str = "") -> np.ndarray:
    """Horizontal bars of per-class IoU (percent; None = undefined, drawn as 'n/a'), one row per class."""
    font = ImageFont.load_default()
    row, bar_width = 13, 300
    label_width = 8 + max((int(font.getlength(n)) for n in names), default=0)
    height = 24 + row * len(names) + 8
    chart = Image.new("RGB", (label_width + bar_width + 60, height), "white")
    draw = ImageDraw.Draw(chart)
    draw.text((4, 4), title, fill="black", font=font)
    colours = palette(len(names))
    for i, (name, iou) in enumerate(zip(names, ious)):
        y = 24 + i * row
        draw.text((4, y), name, fill="black", font=font)
        if iou is None:
            draw.text((label_width, y), "n/a", fill="gray", font=font)
            continue
        length = int(round(bar_width * max(0.0, min(iou, 100.0)) / 100.0))
        draw.rectangle([label_width, y + 2, label_width + max(length, 1), y + row - 3], fill=tuple(int(c) for c in colours[i]))
        draw.text((label_width + length + 4, y), f"{iou:.1f}", fill="black", font=font)
    return np.asarray(chart)
