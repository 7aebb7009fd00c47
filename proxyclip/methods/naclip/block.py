"""NACLIP's last block (Hajimiri et al., WACV 2025; proxyclip/methods/naclip/README.md): neighbourhood attention, reduced block.

Every token attends with softmax(k kᵀ / sqrt(d) + G) over keys, G a Gaussian of the distance between patches on the
token grid (unnormalised, peak 1; 0 wherever the CLS token is involved), shared by every head; the attention's
out-projection is the block's whole output ("reduced": no residual, no `ln_2`, no MLP).
"""
from __future__ import annotations


import torch

from proxyclip.method.clip_tower import Linear, merge_heads, scale_of, split_heads
from proxyclip.method.gaussian_neighbourhood import gaussian_neighbourhood
from proxyclip.method.last_block.base import LAST_BLOCKS, LastBlock


@LAST_BLOCKS.register("naclip")
class NeighbourhoodAttention(LastBlock):
    """out_proj(softmax(k kᵀ s + G) v) per head, s = 1 / sqrt(d); G = `gaussian_neighbourhood(grid, std)`.

    Args:
        std: the Gaussian's standard deviation in patches (5 in every NACLIP config).
    """

    listed_at = 30    # its place in lists of methods (ProxyCLIP first, then the order they were added)

    title = "NACLIP"    # its name in lists of methods (README, docs, help)
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
