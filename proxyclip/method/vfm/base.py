"""The one interface every vision foundation model (VFM) adapter implements."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VFMAdapter(nn.Module):
    """A VFM seen by the segmentor: images `[B, 3, H, W]` normalised with its pixel statistics (its registry entry,
    docs/method.md §1) -> features `[B, C, h, w]`.

    Subclasses set `patch_size` (pixels per token side, on the model's own input) and `embed_dim` (C), and
    implement `extract(x) -> [B, C, h, w]` on the (possibly resized) input. What the model sees:
    - `input_size` (H, W): the input is first resized bilinearly (align_corners=False) to that fixed size (SAM: 1024);
    - `follows_crop`: resized to crop_size x crop_size, the sliding-window crop (MAE, built for the crop);
    - otherwise the crop at its own size (DINO, DINOv2, DINOv3).
    """

    patch_size: int
    embed_dim: int
    input_size: tuple[int, int] | None = None
    follows_crop: bool = False

    def input_size_for(self, crop_size: int | None) -> tuple[int, int] | None:
        """The size the model's input is resized to, for a segmentor whose crop side is `crop_size` (None: none)."""
        if self.follows_crop and crop_size is not None:
            return (int(crop_size), int(crop_size))
        return self.input_size

    def forward(self, x: torch.Tensor, crop_size: int | None = None) -> torch.Tensor:
        """x: [B, 3, H, W] normalised with its statistics; crop_size: the segmentor's crop side -> [B, C, h, w]."""
        size = self.input_size_for(crop_size)
        if size is not None and tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.extract(x)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def last_block_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [B, 3, H, W], the model's input as is (not resized) -> the last block's attention (q, k, v), each
        [B, heads, d, h, w]: the block's own input projection split per head, with its query / key norms, unscaled,
        prefix tokens (CLS, registers) dropped; patches row-major on the grid. For methods that read the VFM's
        attention instead of its features (CASS its keys, CorrCLIP q + k), each computing what it reads in its own
        folder. Only the timm ViT families (DINO, DINOv2, MAE) give it; `offers_last_block_qkv` says which do."""
        raise NotImplementedError(f"{type(self).__name__} gives no last-block queries, keys and values")

    def grid_size(self, height: int, width: int, crop_size: int | None = None) -> tuple[int, int]:
        """The feature grid (h, w) for an input of height x width pixels."""
        height, width = self.input_size_for(crop_size) or (height, width)
        return height // self.patch_size, width // self.patch_size

    def min_crop_side(self) -> int:
        """The smallest crop side the features can serve: one patch, unless the input is resized to a fixed size."""
        return 1 if self.input_size is not None else self.patch_size

    def frozen(self) -> "VFMAdapter":
        """Inference only: eval mode (no dropout) and no gradients."""
        self.eval()
        self.requires_grad_(False)
        return self


def offers_last_block_qkv(vfm: nn.Module | None) -> bool:
    """Whether `vfm` gives `last_block_qkv` (a VFM adapter that implements it), so a method can refuse it up front."""
    return isinstance(vfm, VFMAdapter) and type(vfm).last_block_qkv is not VFMAdapter.last_block_qkv
