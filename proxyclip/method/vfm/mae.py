"""MAE (He et al. 2022) through timm: the paper's `mae_vit_base` alternative (ViT-B/16, LayerNorm eps 1e-6).

docs/method.md §2: the VFM input is resized bilinearly (align_corners=False) to crop x crop, the segmentor's
sliding-window crop (336, Cityscapes 224: the original builds MAE with `img_size = slide_crop`), and the
position table is the checkpoint's native 14 x 14 resized to (crop / 16) x (crop / 16) with bicubic
`size=`, align_corners=False, no antialias (MAE's own `interpolate_pos_embed`); at 224 it is untouched.
The weights load at their native 224 (timm resamples nothing) and the table is resized here, the same
operation on the same fp32 table as the original's resize at load time. Features: the final LayerNorm
(`norm`; timm's MAE config has no `fc_norm`) applied to the last block's patch tokens, CLS dropped.
"""
from __future__ import annotations

from typing import Any

from ...errors import ProxyCLIPError
from ..pos_embed import resize_pos_embed_size
from .timm_vit import TimmViTAdapter, create_timm_model
from .registry import register_vfm


class MAEAdapter(TimmViTAdapter):
    """MAE encoder: ImageNet-normalised [B, 3, H, W] -> (resized to crop x crop) -> [B, C, crop / p, crop / p]."""

    resize_table = staticmethod(resize_pos_embed_size)
    follows_crop = True


def build_mae(pretrained: bool | str, model_kwargs: dict[str, Any], model_name: str) -> MAEAdapter:
    """Build timm's `model_name` (a `*.mae` tag); see `build_vfm`.

    Original MAE checkpoints (`mae_pretrain_vit_base.pth`: `{"model": ...}` with timm's key names) load as they are.
    """
    if "img_size" in model_kwargs:
        raise ProxyCLIPError(
            f"vfm_kwargs img_size={model_kwargs['img_size']!r}: MAE's input size follows the segmentor's crop_size "
            "(336, Cityscapes 224), as in the original. Remove img_size from vfm_kwargs and set crop_size instead."
        )
    # dynamic_img_size=True: PatchEmbed takes any size; the native 14 x 14 table is resized in extract().
    model = create_timm_model(model_name, pretrained, model_kwargs, f"MAE ({model_name})", dynamic_img_size=True)
    return MAEAdapter(model).frozen()


_VARIANTS = {
    "mae_vit_base": ("vit_base_patch16_224.mae", "MAE ViT-B/16 (timm vit_base_patch16_224.mae), 768 channels; the paper's MAE"),
    "mae_vit_large": ("vit_large_patch16_224.mae", "MAE ViT-L/16 (timm vit_large_patch16_224.mae), 1024 channels"),
    "mae_vit_huge": ("vit_huge_patch14_224.mae", "MAE ViT-H/14 (timm vit_huge_patch14_224.mae), 1280 channels"),
}
for _name, (_model, _description) in _VARIANTS.items():
    register_vfm(_name, build_mae, _description + "; input resized to the crop size", model_name=_model)
