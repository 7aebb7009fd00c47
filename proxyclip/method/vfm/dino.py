"""DINO v1 (Caron et al. 2021) through timm: the paper's default VFM is `dino_vitb8` (docs/method.md §2, §9).

Features: the last block's output after the final LayerNorm, patch tokens only (CLS dropped), on the
crop at its own size (a 336 crop gives a 42 x 42 grid with ViT-B/8). The position table is resized the
way DINO's own `interpolate_pos_encoding` does (bicubic with the 0.1 offset scale factor), and left
untouched at the native 224 grid; the CLS position entry is kept as is.
"""
from __future__ import annotations

from typing import Any

from ..pos_embed import resize_pos_embed_offset
from .timm_vit import TimmViTAdapter, create_timm_model
from .registry import register_vfm


class DINOAdapter(TimmViTAdapter):
    """DINO v1 ViT: ImageNet-normalised [B, 3, H, W] -> [B, C, H // p, W // p] (C = 384 / 768)."""

    resize_table = staticmethod(resize_pos_embed_offset)


def build_dino(pretrained: bool | str, model_kwargs: dict[str, Any], model_name: str) -> DINOAdapter:
    """Build timm's `model_name` (a `*.dino` tag); see `build_vfm` for `pretrained` and `model_kwargs`.

    Original DINO checkpoints (`dino_vitbase8_pretrain.pth`, ...) use timm's key names and load as they are.
    """
    # dynamic_img_size=True: timm's supported switch for inputs other than 224 (non-strict PatchEmbed with
    # NHWC output); it changes no weights, and our own table resizing replaces timm's.
    model = create_timm_model(model_name, pretrained, model_kwargs, f"DINO ({model_name})", dynamic_img_size=True)
    return DINOAdapter(model).frozen()


_VARIANTS = {
    "dino_vits16": ("vit_small_patch16_224.dino", "DINO ViT-S/16 (timm vit_small_patch16_224.dino), 384 channels"),
    "dino_vits8": ("vit_small_patch8_224.dino", "DINO ViT-S/8 (timm vit_small_patch8_224.dino), 384 channels"),
    "dino_vitb16": ("vit_base_patch16_224.dino", "DINO ViT-B/16 (timm vit_base_patch16_224.dino), 768 channels"),
    "dino_vitb8": ("vit_base_patch8_224.dino", "DINO ViT-B/8 (timm vit_base_patch8_224.dino), 768 channels; the paper's default"),
}
for _name, (_model, _description) in _VARIANTS.items():
    register_vfm(_name, build_dino, _description, model_name=_model)
