"""DINOv2 with registers (Darcet et al. 2024) through timm: the paper's `dinov2_vitb14_reg` alternative.

Features: the last block's output after the final LayerNorm; CLS and the 4 register tokens dropped
(docs/method.md §2: a 336 crop gives 24 x 24 with ViT-B/14). The position table, native 37 x 37 (518 / 14),
is resized bicubically to `size=` with antialias in float32 (DINOv2's `interpolate_pos_encoding` with
`interpolate_antialias=True, interpolate_offset=0`), and left untouched at the native grid.

timm builds these models with `no_embed_class=True`: the table covers the patches only, and the
CLS position entry of the original checkpoint is folded into `cls_token` by timm's converter, so
CLS + pos[0], then the registers, then the patches, exactly as the original model orders them.
"""
from __future__ import annotations

from typing import Any

from ..pos_embed import resize_pos_embed_antialias
from .timm_vit import TimmViTAdapter, create_timm_model
from .registry import register_vfm


class DINOv2Adapter(TimmViTAdapter):
    """DINOv2-reg ViT: ImageNet-normalised [B, 3, H, W] -> [B, C, H // 14, W // 14] (C = 384 ... 1536)."""

    resize_table = staticmethod(resize_pos_embed_antialias)


def build_dinov2(pretrained: bool | str, model_kwargs: dict[str, Any], model_name: str) -> DINOv2Adapter:
    """Build timm's `model_name` (a `*_reg4_dinov2.lvd142m` tag); see `build_vfm`.

    Original checkpoints (`dinov2_vitb14_reg4_pretrain.pth`: `register_tokens`, `mask_token`, a 1 + 1369
    entry table) are converted by timm's `checkpoint_filter_fn`.
    """
    # dynamic_img_size=True: PatchEmbed takes any size; the table is resized by our own code in extract().
    model = create_timm_model(model_name, pretrained, model_kwargs, f"DINOv2 ({model_name})", dynamic_img_size=True)
    return DINOv2Adapter(model).frozen()


_VARIANTS = {
    "dinov2_vits14_reg": ("vit_small_patch14_reg4_dinov2.lvd142m", "DINOv2 ViT-S/14 with 4 registers (timm), 384 channels"),
    "dinov2_vitb14_reg": ("vit_base_patch14_reg4_dinov2.lvd142m", "DINOv2 ViT-B/14 with 4 registers (timm), 768 channels; the paper's DINOv2"),
    "dinov2_vitl14_reg": ("vit_large_patch14_reg4_dinov2.lvd142m", "DINOv2 ViT-L/14 with 4 registers (timm), 1024 channels"),
    "dinov2_vitg14_reg": ("vit_giant_patch14_reg4_dinov2.lvd142m", "DINOv2 ViT-g/14 with 4 registers (timm), 1536 channels"),
}
for _name, (_model, _description) in _VARIANTS.items():
    register_vfm(_name, build_dinov2, _description, model_name=_model)
