"""The timm-backed VFM families as data (docs/method.md §2): each an adapter and a table of variants.

Every family's features are the last block's output after the final LayerNorm, with every prefix token (CLS,
registers) dropped: [B, C, h, w]. What differs is how positions follow the input size, and what the model sees:
- DINO v1 (Caron et al. 2021; the paper's default `dino_vitb8`): the crop at its own size; the table resized
  as DINO's `interpolate_pos_encoding` does (bicubic, 0.1-offset scale factor), untouched at the native grid.
- DINOv2 with registers (Darcet et al. 2024): the crop at its own size; the native 37 x 37 (518 / 14) table
  resized bicubically to `size=` with antialias in float32 (`interpolate_antialias=True, interpolate_offset=0`).
- DINOv3 (Siméoni et al. 2025; not in the ProxyCLIP paper): RoPE, computed for whatever grid the input gives,
  so timm's own arbitrary-size path (`forward_features`) is the model's reference behaviour.
- MAE (He et al. 2022): the input resized bilinearly to crop x crop (the original builds MAE with
  `img_size = slide_crop`); the native 14 x 14 table resized to (crop / 16)^2 with bicubic `size=`, no antialias
  (MAE's `interpolate_pos_embed`), the same operation on the same fp32 table as the original's at load time.
Sides that are not multiples of the patch floor the grid (`crop_to_patches`).

Original checkpoints load through timm's converters: DINO's and MAE's (`{"model": ...}`) use timm's key names;
DINOv2's `register_tokens` / 1 + 1369 entry table and DINOv3's `storage_tokens` go through the model module's
`checkpoint_filter_fn`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..pos_embed import resize_pos_embed_antialias, resize_pos_embed_offset, resize_pos_embed_size
from .base import VFMAdapter
from .registry import register_family
from .timm_vit import TimmFamily, TimmVariant, TimmViTAdapter, crop_to_patches, square_patch_size, tokens_to_map


class DINOAdapter(TimmViTAdapter):
    """DINO v1 ViT: ImageNet-normalised [B, 3, H, W] -> [B, C, H // p, W // p] (C = 384 / 768)."""

    resize_table = staticmethod(resize_pos_embed_offset)


class DINOv2Adapter(TimmViTAdapter):
    """DINOv2-reg ViT: ImageNet-normalised [B, 3, H, W] -> [B, C, H // 14, W // 14] (C = 384 ... 1536).

    timm builds these models with `no_embed_class=True`: the table covers the patches only, and the CLS position
    entry of the original checkpoint is folded into `cls_token` by timm's converter, so CLS + pos[0], then the
    registers, then the patches, exactly as the original model orders them.
    """

    resize_table = staticmethod(resize_pos_embed_antialias)


class DINOv3Adapter(VFMAdapter):
    """DINOv3 ViT (timm `Eva`, RoPE): ImageNet-normalised [B, 3, H, W] -> [B, C, H // 16, W // 16]."""

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


class MAEAdapter(TimmViTAdapter):
    """MAE encoder (LayerNorm eps 1e-6; timm's config has no `fc_norm`): ImageNet-normalised [B, 3, H, W] ->
    (resized to crop x crop) -> [B, C, crop / p, crop / p]."""

    resize_table = staticmethod(resize_pos_embed_size)
    follows_crop = True


DINO = TimmFamily("DINO", DINOAdapter, "(timm {timm_name}), {width} channels", {
    "dino_vits16": TimmVariant("vit_small_patch16_224.dino", "S", 16, 384),
    "dino_vits8": TimmVariant("vit_small_patch8_224.dino", "S", 8, 384),
    "dino_vitb16": TimmVariant("vit_base_patch16_224.dino", "B", 16, 768),
    "dino_vitb8": TimmVariant("vit_base_patch8_224.dino", "B", 8, 768, "the paper's default"),
})

DINOV2 = TimmFamily("DINOv2", DINOv2Adapter, "with 4 registers (timm), {width} channels", {
    "dinov2_vits14_reg": TimmVariant("vit_small_patch14_reg4_dinov2.lvd142m", "S", 14, 384),
    "dinov2_vitb14_reg": TimmVariant("vit_base_patch14_reg4_dinov2.lvd142m", "B", 14, 768, "the paper's DINOv2"),
    "dinov2_vitl14_reg": TimmVariant("vit_large_patch14_reg4_dinov2.lvd142m", "L", 14, 1024),
    "dinov2_vitg14_reg": TimmVariant("vit_giant_patch14_reg4_dinov2.lvd142m", "g", 14, 1536),
})

DINOV3 = TimmFamily("DINOv3", DINOv3Adapter, "(timm, RoPE, 4 registers), {width} channels", {
    "dinov3_vits16": TimmVariant("vit_small_patch16_dinov3.lvd1689m", "S", 16, 384),
    "dinov3_vitb16": TimmVariant("vit_base_patch16_dinov3.lvd1689m", "B", 16, 768),
    "dinov3_vitl16": TimmVariant("vit_large_patch16_dinov3.lvd1689m", "L", 16, 1024),
})

MAE = TimmFamily("MAE", MAEAdapter, "(timm {timm_name}), {width} channels", {
    "mae_vit_base": TimmVariant("vit_base_patch16_224.mae", "B", 16, 768, "the paper's MAE"),
    "mae_vit_large": TimmVariant("vit_large_patch16_224.mae", "L", 16, 1024),
    "mae_vit_huge": TimmVariant("vit_huge_patch14_224.mae", "H", 14, 1280),
})

for _family in (DINO, DINOV2, DINOV3, MAE):
    register_family(_family)
