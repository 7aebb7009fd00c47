"""What a method reads of the segmentor: `Engine`, a frozen view of the encoders, the text, the window geometry, the
pixel statistics and the linear path, built per call (`TrainingFreeSegmentor.engine()`).

A method that computes whole images (`LastBlock.image_logits`: Trident, CorrCLIP) receives this and the image's
`ImageSource`, never the segmentor: what it may read is exactly these fields, and the engine's functions
(`clip_normalised`, `window_batches`, `averaged_window_logits`) are the same ones the shared forward runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from ..errors import ProxyCLIPError
from .pixel_statistics import Numerics, clip_input
from .sliding_window import WindowBatch, WindowGeometry, averaged_window_logits, window_batches


@dataclass(frozen=True)
class PixelStatistics:
    """The statistics the encoders' inputs are made with (docs/method.md §1), [3, 1, 1] float32 each, RGB."""
    clip_mean: torch.Tensor        # CLIP's, in [0, 1] units
    clip_std: torch.Tensor
    clip_mean_255: torch.Tensor    # CLIP's x 255 rounded to 3 decimals (mmseg's constants, numerics "original")
    clip_std_255: torch.Tensor
    vfm_mean: torch.Tensor | None  # the VFM's, in [0, 1] units (None: a method without a VFM)
    vfm_std: torch.Tensor | None
    numerics: Numerics             # "original" or "defined"

    @property
    def for_vfm(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(clip_mean, clip_std, vfm_mean, vfm_std): what `LastBlock.vfm_features` derives the VFM's input with."""
        return self.clip_mean, self.clip_std, self.vfm_mean, self.vfm_std

    def clip_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """[..., 3, H, W] RGB, uint8 or float in [0, 1] -> CLIP's float32 input under `numerics`."""
        return clip_input(pixels, self.numerics, self.clip_mean, self.clip_std, self.clip_mean_255, self.clip_std_255)


def clip_normalised(image: torch.Tensor, statistics: PixelStatistics) -> torch.Tensor:
    """[3, h, w] RGB, uint8 or float in [0, 1] -> CLIP's float32 input [3, h, w] as the model sees it (§1), on the
    statistics' device; anything but one RGB image is refused."""
    image = image.to(statistics.clip_mean.device)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ProxyCLIPError(f"Images must be [3, H, W] RGB tensors, got shape {tuple(image.shape)}.")
    return statistics.clip_input(image)


@dataclass(frozen=True)
class Engine:
    """The segmentor as a method sees it (its weights are used, never changed)."""
    method: str                    # the method's name, for messages
    visual: nn.Module              # CLIP's image tower (open_clip VisionTransformer)
    vfm: nn.Module | None          # the VFM, for methods that need one
    text: torch.Tensor             # [Q, D] unit query embeddings
    geometry: WindowGeometry       # mode, crop_size, stride, pad_multiple
    statistics: PixelStatistics
    onednn: bool                   # fp32 CPU linears through oneDNN (onednn_linear.py)

    def clip_normalised(self, image: torch.Tensor) -> torch.Tensor:
        """[3, h, w] RGB, uint8 or float in [0, 1] -> CLIP's float32 input [3, h, w] (`clip_normalised`)."""
        return clip_normalised(image, self.statistics)

    def window_batches(self, images: Sequence[torch.Tensor], batch_size: int | None = None) -> Iterator[WindowBatch]:
        """The windows of CLIP-normalised images [3, h, w] under this geometry (sliding_window.py)."""
        return window_batches(images, self.geometry, batch_size)

    def averaged_window_logits(self, images: Sequence[torch.Tensor], logits_of: Callable[[WindowBatch], torch.Tensor],
                               batch_size: int | None = None, widen: bool = False) -> list[torch.Tensor]:
        """Per CLIP-normalised image [3, h, w] its window logits [Q, h, w] averaged (sliding_window.py); `logits_of`
        is the method's per-batch callback, [n, 3, Hp, Wp] windows -> [n, Q, Hp, Wp]."""
        return averaged_window_logits(images, self.geometry, logits_of, batch_size, widen)
