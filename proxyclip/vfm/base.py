"""The one interface every vision foundation model (VFM) adapter implements."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VFMAdapter(nn.Module):
    """A VFM seen by the segmentor: ImageNet-normalised images `[B, 3, H, W]` -> features `[B, C, h, w]`.

    Subclasses set `patch_size` (pixels per token side, on the model's own input), `embed_dim` (C) and
    `input_size` (None: the model sees the crop at its own size; (H, W): the input is first resized
    bilinearly, align_corners=False, to that size, as SAM (1024) and MAE (the crop) require), and
    implement `extract(x) -> [B, C, h, w]` on the possibly resized input.
    """

    patch_size: int
    embed_dim: int
    input_size: tuple[int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] ImageNet-normalised -> [B, C, h, w]."""
        if self.input_size is not None and tuple(x.shape[-2:]) != tuple(self.input_size):
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return self.extract(x)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """The feature grid (h, w) for an input of height x width pixels."""
        if self.input_size is not None:
            height, width = self.input_size
        return height // self.patch_size, width // self.patch_size

    def min_input_multiple(self) -> int:
        """Crop sides must be multiples of this for the features to cover the crop exactly."""
        return 1 if self.input_size is not None else self.patch_size
