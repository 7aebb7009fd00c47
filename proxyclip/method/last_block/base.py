"""The interface of a dense-prediction replacement for CLIP's last residual block, and the head bookkeeping.

Training-free methods differ in how CLIP's last block turns the tokens into patch features: ProxyCLIP borrows
its attention from a VFM, SCLIP correlates queries with queries and keys with keys, ClearCLIP attends queries to
queries without the residual and the MLP, NACLIP adds a Gaussian neighbourhood to key-key similarity. Each is a
`LastBlock`, registered under its method's name in `LAST_BLOCKS` by the module that defines it
(`@LAST_BLOCKS.register("naclip")`); the rest of the dense forward (docs/method.md §3.1-3.2, §3.6) is shared.
"""
from __future__ import annotations

from typing import Callable, ClassVar

import torch
from torch import nn

from ..registry import Registry

Linear = Callable[..., torch.Tensor]     # F.linear, or onednn_linear.linear for fp32 CPU projections


class LastBlock(nn.Module):
    """CLIP's last residual block for dense prediction.

    forward(block, tokens, grid, linear, feats) -> (patch tokens [B, n, W] to go through `ln_post` and `proj`,
    their grid (gh', gw')). `block` is open_clip's `ResidualAttentionBlock` (its weights are used, never changed);
    `tokens` [B, 1 + gh*gw, W] are the batch-first tokens entering it, CLS first; `feats` are the VFM's features
    [B, C, h, w] when `needs_vfm`, else None.
    """

    needs_vfm: ClassVar[bool] = False

    def forward(self, block: nn.Module, tokens: torch.Tensor, grid: tuple[int, int], linear: Linear,
                feats: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        raise NotImplementedError


#: method name -> its last block, in registration order (the package imports ProxyCLIP's first).
LAST_BLOCKS: Registry[type[LastBlock]] = Registry("method", "method")


def split_heads(block: nn.Module, tokens: torch.Tensor, linear: Linear) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of `ln_1(tokens)` through the block's packed in-projection, per head: 3 x [B, heads, L, d]."""
    attn = block.attn
    b, n, width = tokens.shape
    qkv = linear(block.ln_1(tokens), attn.in_proj_weight, attn.in_proj_bias)              # [B, L, 3W]
    q, k, v = qkv.view(b, n, 3, attn.num_heads, width // attn.num_heads).permute(2, 0, 3, 1, 4)
    return q, k, v


def merge_heads(block: nn.Module, out: torch.Tensor, linear: Linear) -> torch.Tensor:
    """[B, heads, L, d] per-head outputs -> heads concatenated -> the attention's out-projection: [B, L, W]."""
    b, heads, n, d = out.shape
    proj = block.attn.out_proj
    return linear(out.transpose(1, 2).reshape(b, n, heads * d), proj.weight, proj.bias)


def scale_of(block: nn.Module) -> float:
    """The attention's 1 / sqrt(head dim), applied after the similarity product as the originals do."""
    return (block.attn.embed_dim // block.attn.num_heads) ** -0.5
