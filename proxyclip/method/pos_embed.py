"""Positional-table resizing, by each model family's own convention (docs/method.md §2).

Tables here are patch tables only, shaped `[N, D]` with N = side * side (a square native grid);
class/register entries are the caller's to keep aside. Every function returns the table unchanged
when the target grid equals the native grid.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _native_side(table: torch.Tensor) -> int:
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0]:
        raise ValueError(f"positional table of {table.shape[0]} entries is not a square grid")
    return side


def _as_image(table: torch.Tensor, side: int) -> torch.Tensor:
    # [N, D] -> [1, D, side, side]
    return table.reshape(1, side, side, -1).permute(0, 3, 1, 2)


def _as_table(image: torch.Tensor) -> torch.Tensor:
    # [1, D, gh, gw] -> [gh * gw, D]
    return image.permute(0, 2, 3, 1).reshape(-1, image.shape[1])


def resize_pos_embed_offset(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """CLIP and DINO v1: bicubic with `scale_factor=((gh + 0.1) / side, (gw + 0.1) / side)`.

    table: [side * side, D] -> [gh * gw, D]. The 0.1 offset (DINO's historical kludge) makes the
    output size floor to (gh, gw); the interpolation itself uses the scale factor, so it is not the
    same as `size=(gh, gw)` and not the identity at the native grid: hence the early return.
    """
    side = _native_side(table)
    gh, gw = grid
    if (gh, gw) == (side, side):
        return table
    image = F.interpolate(_as_image(table, side), scale_factor=((gh + 0.1) / side, (gw + 0.1) / side), mode="bicubic")
    if tuple(image.shape[-2:]) != (gh, gw):
        raise AssertionError(f"bicubic resize gave {tuple(image.shape[-2:])}, expected {(gh, gw)}")
    return _as_table(image)


def resize_pos_embed_antialias(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """DINOv2 with registers: bicubic, `size=(gh, gw)`, antialias, computed in float32 and cast back."""
    side = _native_side(table)
    if tuple(grid) == (side, side):
        return table
    image = F.interpolate(_as_image(table.float(), side), size=tuple(grid), mode="bicubic", antialias=True)
    return _as_table(image).to(table.dtype)


def resize_pos_embed_size(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """MAE: bicubic, `size=(gh, gw)`, align_corners=False (MAE's `interpolate_pos_embed`)."""
    side = _native_side(table)
    if tuple(grid) == (side, side):
        return table
    image = F.interpolate(_as_image(table, side), size=tuple(grid), mode="bicubic", align_corners=False)
    return _as_table(image)
