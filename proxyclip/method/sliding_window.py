"""mmseg's `slide` inference (docs/method.md §5): the windows, their padding, and the one window iterator every
method's windows go through (`window_batches`; `averaged_window_logits` sums and averages their logits)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as F


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


@dataclass(frozen=True)
class WindowGeometry:
    """How an image is cut: mode "slide" (mmseg's windows of `crop_size` every `stride` pixels) or "whole" (one
    window, the image), each window zero-padded to a multiple of `pad_multiple` (docs/method.md §5)."""
    mode: Literal["slide", "whole"]
    crop_size: int
    stride: int
    pad_multiple: int

    def windows(self, height: int, width: int) -> list[Window]:
        if self.mode == "slide":
            return sliding_windows(height, width, self.crop_size, self.stride)
        return [Window(0, height, 0, width)]


@dataclass(frozen=True)
class WindowBatch:
    """Same-shaped padded windows that run through the encoders together, possibly of several images."""
    images: tuple[int, ...]                        # per window, the index of the image it was cut from
    windows: tuple[Window, ...]                    # per window, where it lies in its image
    pads: tuple[tuple[int, int, int, int], ...]    # per window, its (left, right, top, bottom) zero padding
    crops: torch.Tensor                            # [n, 3, Hp, Wp] the padded windows (zeros: CLIP's mean colour)


def window_batches(images: Sequence[torch.Tensor], geometry: WindowGeometry,
                   batch_size: int | None = None) -> Iterator[WindowBatch]:
    """The one window iterator. images: per image [3, h, w] CLIP-normalised. Every image's windows are cut in
    row-major order and zero-padded; windows of one padded shape are grouped (in order of first appearance),
    then run in chunks of `batch_size` (None: all at once). An image's windows all share one shape, so each
    image meets its windows in row-major order whatever the batching."""
    jobs: dict[tuple[int, ...], list[tuple[int, Window, tuple[int, int, int, int], torch.Tensor]]] = defaultdict(list)
    for index, x in enumerate(images):
        for win in geometry.windows(*x.shape[-2:]):
            crop = x[:, win.y1:win.y2, win.x1:win.x2]
            pad = pad_to_multiple(crop.shape[1], crop.shape[2], geometry.pad_multiple)
            crop = F.pad(crop, pad)
            jobs[tuple(crop.shape)].append((index, win, pad, crop))          # same shapes stack
    for group in jobs.values():
        step = batch_size or len(group)
        for start in range(0, len(group), step):
            chunk = group[start:start + step]
            yield WindowBatch(tuple(job[0] for job in chunk), tuple(job[1] for job in chunk),
                              tuple(job[2] for job in chunk), torch.stack([job[3] for job in chunk]))


def averaged_window_logits(images: Sequence[torch.Tensor], geometry: WindowGeometry,
                           logits_of: Callable[[WindowBatch], torch.Tensor], batch_size: int | None = None,
                           widen: bool = False) -> list[torch.Tensor]:
    """mmseg's slide inference: per image [3, h, w] (CLIP-normalised) the window logits [Q, h, w] summed over the
    windows (each cropped back out of its padding) and divided by the window count per pixel.

    logits_of: a batch of windows -> their logits [n, Q, Hp, Wp] at the padded size.
    widen: the canvas takes the logits' dtype when wider than the image's (a float64 model, CorrCLIP's); otherwise
        it is the image's (float32), the logits cast as they are added.
    """
    canvases: dict[int, torch.Tensor] = {}
    counts = [x.new_zeros(1, *x.shape[-2:]) for x in images]
    for batch in window_batches(images, geometry, batch_size):
        logits = logits_of(batch)                                                  # [n, Q, Hp, Wp]
        for index, (y1, y2, x1, x2), (left, _, top, _), crop_logit in zip(batch.images, batch.windows, batch.pads, logits):
            if index not in canvases:      # created at the first window: the logits give Q (and, widened, the dtype)
                x = images[index]
                dtype = torch.promote_types(x.dtype, crop_logit.dtype) if widen else x.dtype
                canvases[index] = x.new_zeros(crop_logit.shape[0], *x.shape[-2:], dtype=dtype)
            canvases[index][:, y1:y2, x1:x2] += crop_logit[:, top:top + y2 - y1, left:left + x2 - x1]
            counts[index][:, y1:y2, x1:x2] += 1
    return [canvases[index] / counts[index].to(canvases[index].dtype) for index in range(len(images))]
