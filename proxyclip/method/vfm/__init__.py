"""Vision foundation models (docs/method.md §2): `build_vfm(name)` -> a `VFMAdapter` giving features [B, C, h, w].

Importing this package registers every family: DINO v1, DINOv2 with registers, DINOv3, SAM and MAE.
"""
from . import dino, dinov2, dinov3, mae, sam  # noqa: F401  (registration at import)
from .base import VFMAdapter
from .registry import build_vfm, list_vfms, register_vfm

__all__ = ["VFMAdapter", "build_vfm", "list_vfms", "register_vfm"]
