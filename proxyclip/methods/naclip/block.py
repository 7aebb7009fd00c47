"""NACLIP's last block (Hajimiri et al., WACV 2025; proxyclip/methods/naclip/README.md): neighbourhood attention, reduced block.

Every token attends with softmax(k kᵀ / sqrt(d) + G) over keys, G a Gaussian of the distance between patches on the
token grid (unnormalised, peak 1; 0 wherever the CLS token is involved), shared by every head; the attention's
out-projection is the block's whole output ("reduced": no residual, no `ln_2`, no MLP).
"""
from __future__ import annotations

import math

import torch

from proxyclip.method.clip_tower import Linear, merge_heads, scale_of, split_heads
from proxyclip.method.last_block.base import LAST_BLOCKS, LastBlock


def gaussian_neighbourhood(grid: tuple[int, int], std: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """[1 + gh*gw, 1 + gh*gw] bias: exp(-|pos(p) - pos(q)|² / (2 std²)) between patches (row-major positions), 0 in the
    CLS row and column. As the original builds it: offsets scaled by 1 / (std sqrt(2)), squared, summed; computed in
    fp32 at least, returned in `dtype`."""
    gh, gw = grid
    work = torch.promote_types(dtype, torch.float32)
    rows, cols = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    pos = torch.stack([rows.flatten(), cols.flatten()], dim=1).to(work) / (std * math.sqrt(2))   # [N, 2]
    bias = torch.exp(-(pos[:, None] - pos[None]).square().sum(-1))                               # [N, N]
    return torch.nn.functional.pad(bias, (1, 0, 1, 0)).to(dtype)                                # CLS first: zeros


@LAST_BLOCKS.register("naclip")
class NeighbourhoodAttention(LastBlock):
    """out_proj(softmax(k kᵀ s + G) v) per head, s = 1 / sqrt(d); G = `gaussian_neighbourhood(grid, std)`.

    Args:
        std: the Gaussian's standard deviation in patches (5 in every NACLIP config).
    """

    listed_at = 30    # its place in lists of methods (ProxyCLIP first, then the order they were added)

    summary = "neighbourhood attention, reduced block"

    def __init__(self, std: float = 5.0):
        super().__init__()
        self.std = std

    def forward(self, block, tokens: torch.Tensor, grid: tuple[int, int], linear: Linear,
                feats: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        q, k, v = split_heads(block, tokens, linear)                       # [B, heads, L, d]; q unused
        bias = gaussian_neighbourhood(grid, self.std, tokens.device, k.dtype)
        attn = torch.softmax((k @ k.transpose(-1, -2)) * scale_of(block) + bias, dim=-1)
        return merge_heads(block, attn @ v, linear)[:, 1:], grid
