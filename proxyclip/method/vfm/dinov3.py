"""DINOv3 (Siméoni et al. 2025) through timm: an extra VFM the ProxyCLIP paper does not have.

DINOv3 encodes positions with RoPE, computed for whatever token grid the input gives, so there is no
table to resize: timm's own arbitrary-size path (`dynamic_img_size=True`, `forward_features`) is the
model's reference behaviour. Features: the final LayerNorm of the last block, with every prefix token
(CLS and the 4 storage/register tokens) dropped. Sides that are not multiples of 16 floor the grid.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .timm_vit import create_timm_model, crop_to_patches, square_patch_size, tokens_to_map
from .base import VFMAdapter
from .registry import register_vfm


class DINOv3Adapter(VFMAdapter):
    """DINOv3 ViT (timm `Eva`): ImageNet-normalised [B, 3, H, W] -> [B, C, H // 16, W // 16]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.patch_size = square_patch_size(model)
        self.embed_dim = model.embed_dim

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> [B, C, H // p, W // p]."""
        x = crop_to_patches(x, self.patch_size)
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        tokens = self.model.forward_features(x)                   # [B, prefix + gh*gw, C], final norm applied
        return tokens_to_map(tokens[:, self.model.num_prefix_tokens:], grid)


def build_dinov3(pretrained: bool | str, model_kwargs: dict[str, Any], model_name: str) -> DINOv3Adapter:
    """Build timm's `model_name` (a `*_dinov3.lvd1689m` tag); see `build_vfm`.

    Original Meta checkpoints (`storage_tokens`, ...) are converted by timm's `eva.checkpoint_filter_fn`.
    """
    # timm's DINOv3 definitions already set dynamic_img_size=True; forced so model_kwargs cannot undo it.
    model = create_timm_model(model_name, pretrained, model_kwargs, f"DINOv3 ({model_name})", dynamic_img_size=True)
    return DINOv3Adapter(model).frozen()


_VARIANTS = {
    "dinov3_vits16": ("vit_small_patch16_dinov3.lvd1689m", "DINOv3 ViT-S/16 (timm, RoPE, 4 registers), 384 channels"),
    "dinov3_vitb16": ("vit_base_patch16_dinov3.lvd1689m", "DINOv3 ViT-B/16 (timm, RoPE, 4 registers), 768 channels"),
    "dinov3_vitl16": ("vit_large_patch16_dinov3.lvd1689m", "DINOv3 ViT-L/16 (timm, RoPE, 4 registers), 1024 channels"),
}
for _name, (_model, _description) in _VARIANTS.items():
    register_vfm(_name, build_dinov3, _description, model_name=_model)
