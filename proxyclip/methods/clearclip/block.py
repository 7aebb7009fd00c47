"""ClearCLIP's last block (Lan et al., ECCV 2024; proxyclip/methods/clearclip/README.md): query-query attention, nothing else.

Every token (the CLS token too) attends with softmax(q qᵀ / sqrt(d)) over keys; the attention's out-projection is the
block's whole output: no residual connection, no `ln_2`, no MLP. The patch tokens go on to `ln_post` and `proj`.
"""
from __future__ import annotations

from typing import Literal

import torch

from proxyclip.method.clip_tower import Linear, merge_heads, scale_of, split_heads
from proxyclip.method.last_block.base import LAST_BLOCKS, LastBlock


@LAST_BLOCKS.register("clearclip")
class QueryQueryAttention(LastBlock):
    """out_proj(softmax(q qᵀ s) v) per head, s = 1 / sqrt(d).

    Args:
        similarity: "query-query", ClearCLIP as its paper and demo run it; "query-key", the attention of the
            repository's benchmark configs (`model_type='vanilla'`, configs/base_config.py:6), which keeps CLIP's
            own attention and only drops the residual and the MLP.
    """

    listed_at = 20    # its place in lists of methods (ProxyCLIP first, then the order they were added)

    title = "ClearCLIP"    # its name in lists of methods (README, docs, help)
    summary = "query-query attention, no residual or MLP"

    def __init__(self, similarity: Literal["query-query", "query-key"] = "query-query"):
        super().__init__()
        if similarity not in ("query-query", "query-key"):
            raise ValueError(f"similarity must be 'query-query' or 'query-key', got {similarity!r}")
        self.similarity = similarity

    def forward(self, block, tokens: torch.Tensor, grid: tuple[int, int], linear: Linear,
                feats: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        q, k, v = split_heads(block, tokens, linear)                       # [B, heads, L, d]
        keys = q if self.similarity == "query-query" else k
        attn = torch.softmax((q @ keys.transpose(-1, -2)) * scale_of(block), dim=-1)
        return merge_heads(block, attn @ v, linear)[:, 1:], grid
