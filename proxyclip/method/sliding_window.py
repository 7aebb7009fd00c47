"""mmseg's `slide` inference geometry (docs/method.md §5): windows and padding."""
from __future__ import annotations

from typing import NamedTuple


class Window(NamedTuple):
    y1: int
    y2: int
    x1: int
    x2: int


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def num_grids(size: int, crop: int, stride: int) -> int:
    """`max(size - crop + stride - 1, 0) // stride + 1` windows along one side."""
    return max(size - crop + stride - 1, 0) // stride + 1


def sliding_windows(height: int, width: int, crop: int | tuple[int, int], stride: int | tuple[int, int]) -> list[Window]:
    """Row-major windows; the last window of a row/column is pushed back inside the image."""
    (crop_h, crop_w), (stride_h, stride_w) = _pair(crop), _pair(stride)
    windows = []
    for i in range(num_grids(height, crop_h, stride_h)):
        for j in range(num_grids(width, crop_w, stride_w)):
            y2, x2 = min(i * stride_h + crop_h, height), min(j * stride_w + crop_w, width)
            windows.append(Window(max(y2 - crop_h, 0), y2, max(x2 - crop_w, 0), x2))
    return windows


def pad_to_multiple(height: int, width: int, multiple: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding to the next multiple; left/top get half, rounded down."""
    pad_w, pad_h = -width % multiple, -height % multiple
    return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2
