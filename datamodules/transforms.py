"""mmcv's keep-ratio resize (`Resize(scale=(long, short), keep_ratio=True)`), image only."""
from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check at import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["KeepRatioResize", "rescale_size"]


def rescale_size(h: int, w: int, long: int, short: int) -> tuple[int, int]:
    """New `(height, width)` of an `h x w` image under mmcv's keep-ratio rescale to `(long, short)`.

    `s = min(long / max(h, w), short / min(h, w))`, new size `(int(w * s + 0.5), int(h * s + 0.5))`,
    as `mmcv.rescale_size` computes it (which, like here, takes the larger of the two numbers as the
    long-edge bound and the smaller as the short-edge bound).
    """
    long_edge, short_edge = max(long, short), min(long, short)
    s = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * float(s) + 0.5), int(w * float(s) + 0.5)


class KeepRatioResize(A.ImageOnlyTransform):
    """Resize keeping the aspect ratio so the long side is <= `long` and the short side <= `short`,
    with at least one bound met: `cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)`
    on the uint8 image, as mmcv's `imrescale` does. Masks and labels are not touched.
    """

    def __init__(self, long: int, short: int, p: float = 1.0):
        super().__init__(p=p)
        self.long = int(long)
        self.short = int(short)

    def apply(self, img: np.ndarray, **params) -> np.ndarray:
        new_h, new_w = rescale_size(img.shape[0], img.shape[1], self.long, self.short)
        if (new_h, new_w) == img.shape[:2]:
            return img
        return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("long", "short")
