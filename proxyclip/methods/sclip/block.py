"""SCLIP's last block (Wang et al., ECCV 2024; proxyclip/methods/sclip/README.md): correlative self-attention.

Every token attends with the sum of two attention maps, query-query and key-key (each softmax(X Xᵀ / sqrt(d)) over
keys), the CLS token included; the block's residual connection and MLP are kept. The patch tokens go on to
`ln_post` and `proj`.
"""
from __future__ import annotations

import torch

from proxyclip.method.clip_tower import Linear, merge_heads, scale_of, split_heads
from proxyclip.method.last_block.base import LAST_BLOCKS, LastBlock


@LAST_BLOCKS.register("sclip")
class CorrelativeAttention(LastBlock):
    """x + out_proj((softmax(q qᵀ s) + softmax(k kᵀ s)) v), then x + mlp(ln_2(x)); per head, s = 1 / sqrt(d)."""

    listed_at = 10    # its place in lists of methods (ProxyCLIP first, then the order they were added)

    title = "SCLIP"    # its name in lists of methods (README, docs, help)
    summary = "correlative self-attention, residual and MLP kept"

    def forward(self, block, tokens: torch.Tensor, grid: tuple[int, int], linear: Linear,
                feats: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        q, k, v = split_heads(block, tokens, linear)                       # [B, heads, L, d]
        s = scale_of(block)
        attn = torch.softmax((q @ q.transpose(-1, -2)) * s, dim=-1) + torch.softmax((k @ k.transpose(-1, -2)) * s, dim=-1)
        x = tokens + block.ls_1(merge_heads(block, attn @ v, linear))    # the residual connection, kept
        x = x + block.ls_2(block.mlp(block.ln_2(x)))                      # and the MLP
        return x[:, 1:], grid
