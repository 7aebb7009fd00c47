"""The same images segmented by every setting of an eval_all folder: compare_panels/<benchmark>/NNN_<image>.png.

Each finished `test` keeps, beside its panel, the panel's arrays (panels/NNN_<image>.npz: the image at its ground
truth's size, the ground truth, the prediction; result_writer.py). For each benchmark and each such image that a
setting with a number for the benchmark has, one picture: image | ground truth | one prediction per setting (its name
above it; at most PER_ROW predictions a row, further rows under the first one's predictions), and below them one
legend of the classes shown. The class names and the palette are the benchmark's, from a metrics.json of it. A setting
without a result for the benchmark, or without that image's panel (a smaller --model.num_panels), is left out, and
the picture's title line names it and why.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..shell.visualize import (IGNORED, _side_by_side, _titled, colorize, display_scale, enlarge, legend_panel,
                               palette)

FOLDER = "compare_panels"
PER_ROW = 4                 # predictions per row of a picture


def _padded(tile: np.ndarray, width: int) -> np.ndarray:
    """`tile` on white, `width` wide, left-aligned."""
    if tile.shape[1] >= width:
        return tile
    return np.concatenate([tile, np.full((tile.shape[0], width - tile.shape[1], 3), 255, np.uint8)], axis=1)


def methods_panel(image: np.ndarray, label: np.ndarray, predictions: Sequence[tuple[str, np.ndarray]],
                  names: Sequence[str], ignore_index: int, colours: np.ndarray, title: str = "") -> np.ndarray:
    """image | ground truth | each (setting, prediction) under its setting's name, PER_ROW predictions a row, a title
    line above, a legend of the classes shown (and "ignored") below: [H, W, 3] uint8."""
    valid = (label != ignore_index) & (label < len(names))
    shown = np.unique(np.concatenate([label[valid].ravel(), *(p.ravel() for _, p in predictions)])).astype(int)
    shown = shown[(shown >= 0) & (shown < len(names))]
    entries, entry_colours = [names[i] for i in shown], [colours[i] for i in shown]
    if (label == ignore_index).any():
        entries, entry_colours = entries + ["ignored"], entry_colours + [IGNORED]
    scale = display_scale(*label.shape)
    lead = [_titled(enlarge(image, scale), "image"),
            _titled(enlarge(colorize(label, colours, ignore_index), scale), "ground truth")]
    tiles = [_titled(enlarge(colorize(pred, colours), scale), setting) for setting, pred in predictions]
    rows = [_side_by_side(lead + tiles[:PER_ROW])]
    indent = _side_by_side(lead).shape[1] + 4                      # later rows sit under the first row's predictions
    for start in range(PER_ROW, len(tiles), PER_ROW):
        row = _side_by_side(tiles[start:start + PER_ROW])
        rows.append(np.concatenate([np.full((row.shape[0], indent, 3), 255, np.uint8), row], axis=1))
    width = max(r.shape[1] for r in rows)
    legend = legend_panel(entries, entry_colours, width=width)
    parts = [_padded(part, width) for part in [*rows, legend]]
    gap = np.full((4, width, 3), 255, np.uint8)
    body = np.concatenate([p for part in parts for p in (part, gap)][:-1])
    if not title:
        return body
    heading = _titled(np.full((0, width, 3), 255, np.uint8), title)
    return np.concatenate([heading, body])


def _arrays(panels: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted(panels.glob("*.npz"))} if panels.is_dir() else {}


def _image_picture(stem: str, arrays: dict[str, dict[str, Path]], measured: list[str], no_result: list[str],
                   names: list[str], colours: np.ndarray, title: str) -> np.ndarray:
    """One image's picture: the settings' predictions of the image's size beside its label, the others named in the
    title with why they are not shown."""
    having = [s for s in measured if stem in arrays[s]]
    first = np.load(arrays[having[0]][stem])
    image, label, ignore_index = first["image"], first["label"], int(first["ignore_index"])
    predictions, other_size = [], []
    for setting in having:
        pred = np.load(arrays[setting][stem])["pred"]
        (predictions if pred.shape == label.shape else other_size).append((setting, pred))
    absent = ([f"{s} (no result)" for s in no_result] + [f"{s} (no panel)" for s in measured if s not in having]
              + [f"{s} (another image size)" for s, _ in other_size])
    title += f"; not shown: {', '.join(absent)}" if absent else ""
    return methods_panel(image, label, predictions, names, ignore_index, colours, title)


def write_compare_panels(output: Path, benchmarks: Sequence[str], rows: Sequence[dict[str, Any]],
                         titles: dict[str, str] | None = None) -> list[Path]:
    """Replace `output`/compare_panels/ with one picture per (benchmark, image) of the settings in `rows` (eval_all's
    summary rows, in their order) that have a number for the benchmark; returns the pictures written."""
    folder = output / FOLDER
    shutil.rmtree(folder, ignore_errors=True)                      # wholly derived from the results: redrawn each time
    written = []
    for bench in benchmarks:
        measured = [row["setting"] for row in rows if isinstance(row["mIoU"].get(bench), float)]
        no_result = [row["setting"] for row in rows if row["setting"] not in measured]
        arrays = {s: _arrays(output / s / bench / "panels") for s in measured}
        if not any(arrays.values()):
            continue
        metrics = json.loads((output / measured[0] / bench / "metrics.json").read_text())
        names = [row["name"] for row in metrics["per_class"]]
        colours = palette(len(names), metrics.get("dataset", ""))
        for stem in sorted({stem for found in arrays.values() for stem in found}):
            picture = _image_picture(stem, arrays, measured, no_result, names, colours,
                                     f"{(titles or {}).get(bench, bench)} {stem}")
            path = folder / bench / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture).save(path)
            written.append(path)
    return written
