"""Label maps: the stored values -> class indices mapping, and what can be wrong with a label file."""
from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from .errors import examples

LabelMap = Callable[[np.ndarray], np.ndarray]


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """mmseg's `reduce_zero_label`: 0 -> 255 (ignore), k -> k - 1, 255 stays 255."""
    out = label.astype(np.int64) - 1
    out[label == 0] = 255
    out[label == 255] = 255
    return out


def outside_classes(label: np.ndarray, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """Boolean mask of the pixels whose value is neither a class 0..num_classes-1 nor `ignore_index`."""
    bad = (label >= num_classes) | (label < 0)
    return bad if ignore_index is None else bad & (label != ignore_index)


def label_problem(label: np.ndarray, image_hw: tuple[int, int], image_path: str | os.PathLike,
                  label_path: str | os.PathLike, num_classes: int, ignore_index: int,
                  check_range: bool = True, stored: np.ndarray | None = None) -> str | None:
    """What is wrong with a (mapped) label map, as a one-paragraph message, or None if nothing.

    `stored` is the label before the label mapping, when there is one: the message then names the
    values as they are in the file.
    """
    if tuple(label.shape) != tuple(image_hw):
        return (f"The label {label_path} is {label.shape[1]}x{label.shape[0]} (WxH) but its image "
                f"{image_path} is {image_hw[1]}x{image_hw[0]}; ground truth must match its image pixel "
                f"for pixel. The pair is mismatched or one file is from another dataset version: "
                f"re-extract both, or re-run the label preparation.")
    if check_range:
        bad = outside_classes(label, num_classes, ignore_index)
        if bad.any():
            values = examples(np.unique(label[bad]).tolist(), 8)
            if stored is not None and stored is not label:
                values = f"{examples(np.unique(stored[bad]).tolist(), 8)} (mapped to {values})"
            return (f"The label {label_path} has values {values} in {int(bad.sum())} pixel{'' if int(bad.sum()) == 1 else 's'}, outside the "
                    f"{num_classes} classes 0..{num_classes - 1} and the ignore value {ignore_index}. The "
                    f"file is from another dataset or was not prepared (e.g. colour PNGs instead of class "
                    f"indices, raw ids instead of train ids): check the dataset choice and its preparation "
                    f"(`python -m datamodules.prepare check ROOT --dataset NAME`).")
    return None
