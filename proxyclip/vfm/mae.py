"""MAE (He et al. 2022) through timm: the paper's `mae_vit_base` alternative (ViT-B/16, LayerNorm eps 1e-6).

METHOD §2: the VFM input is resized bilinearly (align_corners=False) to crop x crop (the base class
does it, from `input_size`); the model is built for that size, and its position table is resized ONCE,
at load time, from the checkpoint's native grid (14 x 14 for 224 / 16) to (crop / p) x (crop / p) with
bicubic `size=`, align_corners=False, no antialias: MAE's own `interpolate_pos_embed`. At 224 the table
is untouched. Features: the final LayerNorm (`norm`; timm's MAE config has no `fc_norm`) applied to the
last block's patch tokens, CLS dropped.
"""
from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from ..pos_embed import resize_pos_embed_size
from ..weights import load_state_dict_checked
from ._timm import create_timm_model, freeze, tokens_to_map
from .base import VFMAdapter
from .registry import register_vfm


class MAEAdapter(VFMAdapter):
    """MAE encoder built for img_size: ImageNet-normalised [B, 3, H, W] -> (resized) -> [B, C, img_size/p, img_size/p]."""

    def __init__(self, model: nn.Module, img_size: int):
        super().__init__()
        self.model = model
        self.patch_size = model.patch_embed.patch_size[0]
        self.embed_dim = model.embed_dim
        self.input_size = (img_size, img_size)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, img_size, img_size] -> [B, C, img_size // p, img_size // p]."""
        tokens = self.model.forward_features(x)        # [B, 1 + N, C], `norm` applied; table already fits
        return tokens_to_map(tokens[:, self.model.num_prefix_tokens:], self.model.patch_embed.grid_size)


def resize_mae_state(state: dict[str, torch.Tensor], num_pos_prefix: int, grid: tuple[int, int]) -> dict[str, torch.Tensor]:
    """The state dict with its `pos_embed` [1, prefix + side*side, C] resized to [1, prefix + gh*gw, C], MAE's way."""
    table = state["pos_embed"][0]
    patches = resize_pos_embed_size(table[num_pos_prefix:], grid)
    return {**state, "pos_embed": torch.cat([table[:num_pos_prefix], patches])[None]}


def build_mae(pretrained: bool | str, model_kwargs: dict[str, Any], model_name: str, img_size: int = 336) -> MAEAdapter:
    """Build timm's `model_name` (a `*.mae` tag) for img_size x img_size inputs (the crop size).

    `model_kwargs["img_size"]`, when given, is taken as the crop size instead of `img_size`. Original MAE
    checkpoints (`mae_pretrain_vit_base.pth`: `{"model": ...}` with timm's key names) load as they are.
    """
    kwargs = dict(model_kwargs)
    img_size = int(kwargs.pop("img_size", img_size))
    what = f"MAE ({model_name})"
    # The weights go first into a model at the checkpoint's native 224: then timm has nothing to resample
    # (its resampling is antialiased, MAE's is not), and the table is resized below, once, MAE's way.
    native = create_timm_model(model_name, pretrained, kwargs, what)
    model = timm.create_model(model_name, pretrained=False, img_size=img_size, **kwargs)
    num_pos_prefix = 0 if native.no_embed_class else native.num_prefix_tokens
    state = resize_mae_state(native.state_dict(), num_pos_prefix, model.patch_embed.grid_size)
    del native
    load_state_dict_checked(model, state, str(pretrained) if isinstance(pretrained, str) else model_name, what)
    return freeze(MAEAdapter(model, img_size))


_VARIANTS = {
    "mae_vit_base": ("vit_base_patch16_224.mae", "MAE ViT-B/16 (timm vit_base_patch16_224.mae), 768 channels; the paper's MAE"),
    "mae_vit_large": ("vit_large_patch16_224.mae", "MAE ViT-L/16 (timm vit_large_patch16_224.mae), 1024 channels"),
    "mae_vit_huge": ("vit_huge_patch14_224.mae", "MAE ViT-H/14 (timm vit_huge_patch14_224.mae), 1280 channels"),
}
for _name, (_model, _description) in _VARIANTS.items():
    register_vfm(_name, build_mae, _description + "; input resized to img_size (default 336)", model_name=_model)
