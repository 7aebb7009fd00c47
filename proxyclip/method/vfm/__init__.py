"""Vision foundation models (docs/method.md §2): `build_vfm(name)` -> a `VFMAdapter` giving features [B, C, h, w].

Each family's module registers its variants when imported (`register_family`): the timm-backed DINO v1, DINOv2
with registers, DINOv3 and MAE (`timm_families.py`, one table each), and SAM (`sam.py`, segment-anything).
"""
from .base import VFMAdapter
from .registry import VFMS, build_vfm, get_vfm_entry, list_vfms, register_family, register_vfm
from .timm_families import DINO, DINOV2, DINOV3, MAE
from .sam import SAM

__all__ = ["VFMAdapter", "VFMS", "build_vfm", "get_vfm_entry", "list_vfms", "register_family", "register_vfm",
           "DINO", "DINOV2", "DINOV3", "MAE", "SAM"]
