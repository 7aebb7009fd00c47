"""SAM's image encoder (Kirillov et al. 2023) through segment-anything: the paper's `sam_vit_b` alternative.

docs/method.md §1–§2: the VFM input is resized bilinearly (align_corners=False) to 1024 x 1024 (the base class
does it, from `input_size`), and the features are the encoder's output after its neck, [B, 256, 64, 64].
SAM's absolute position table is built for exactly that input, so nothing is resized.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import torch
from segment_anything.modeling import ImageEncoderViT, Sam
from torch import nn

from ..loading import download_guard, load_state_dict_checked, load_state_dict_file
from .base import VFMAdapter
from .registry import register_family


class SAMVariant(NamedTuple):
    """One official SAM: its size, the `ImageEncoderViT` arguments that differ (segment_anything/build_sam.py), and
    its checkpoint."""

    size: str
    encoder: dict[str, Any]
    url: str


# segment_anything/build_sam.py: the encoder arguments shared by every official model.
_COMMON = dict(img_size=1024, patch_size=16, mlp_ratio=4, norm_layer=partial(nn.LayerNorm, eps=1e-6),
               qkv_bias=True, use_rel_pos=True, window_size=14, out_chans=256)
_PREFIX = "image_encoder."  # where a full SAM checkpoint keeps the encoder


def pixel_statistics() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """SAM's own pixel_mean / pixel_std (`Sam`'s defaults, which build_sam passes: 0-255 units) in [0, 1] units:
    ImageNet's 0.485, 0.456, 0.406 / 0.229, 0.224, 0.225 in float32."""
    defaults = inspect.signature(Sam.__init__).parameters
    return tuple(v / 255 for v in defaults["pixel_mean"].default), tuple(v / 255 for v in defaults["pixel_std"].default)


class SAMAdapter(VFMAdapter):
    """SAM encoder: ImageNet-normalised [B, 3, H, W] -> (resized to img_size) -> [B, out_chans, img_size/16, img_size/16]."""

    def __init__(self, encoder: ImageEncoderViT, img_size: int, patch_size: int, out_chans: int):
        super().__init__()
        self.encoder = encoder
        self.patch_size = patch_size
        self.embed_dim = out_chans
        self.input_size = (img_size, img_size)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, img_size, img_size] -> [B, out_chans, img_size // 16, img_size // 16] (after the neck)."""
        # The input is normalised with SAM's own statistics (`pixel_statistics`, docs/method.md §1): nothing more.
        return self.encoder(x)


@dataclass(frozen=True, eq=False)   # eq=False: hashed by identity, as `family.build` in a registry entry is
class SAMFamily:
    """SAM's image encoders: segment-anything's variant name (vit_b) -> `SAMVariant`, registered as sam_<variant>."""

    variants: dict[str, SAMVariant]

    def build(self, pretrained: bool | str, model_kwargs: dict[str, Any], variant: str) -> SAMAdapter:
        """Build SAM's `variant` image encoder; `model_kwargs` override the official `ImageEncoderViT` arguments.

        pretrained: True -> the official checkpoint (downloaded once by torch.hub, then cached); a path -> a
            full SAM `.pth` (keys under `image_encoder.`) or an encoder-only state dict; False -> random.
        """
        url = self.variants[variant].url
        cfg = {**_COMMON, **self.variants[variant].encoder, **model_kwargs}
        encoder = ImageEncoderViT(**cfg)
        what = f"SAM image encoder ({variant})"
        if pretrained is True:
            with download_guard(what):
                state = torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True)
            state = {k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX)}
            load_state_dict_checked(encoder, state, url, what)
        elif pretrained:
            load_state_dict_checked(encoder, load_state_dict_file(pretrained, prefix=_PREFIX), str(pretrained), what)
        return SAMAdapter(encoder, cfg["img_size"], cfg["patch_size"], cfg["out_chans"]).frozen()

    def entries(self) -> dict[str, dict[str, Any]]:
        """sam_<variant> -> `register_vfm`'s fields: the official checkpoint and SAM's own statistics."""
        statistics = pixel_statistics()
        return {f"sam_{variant}": dict(description=f"SAM {v.size} image encoder (segment-anything), 256 x 64 x 64 after the neck",
                                       weights_url=v.url, statistics=statistics, variant=variant)
                for variant, v in self.variants.items()}


SAM = SAMFamily({
    "vit_b": SAMVariant("ViT-B", dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
                        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"),
    "vit_l": SAMVariant("ViT-L", dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
                        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth"),
    "vit_h": SAMVariant("ViT-H", dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
                        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"),
})
register_family(SAM)
