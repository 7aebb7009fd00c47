"""CLIP's image tower in pieces, for methods that read more than the tokens entering the last block.

`embed_tokens` (patches, CLS, positions, `ln_pre`), `run_blocks` (open_clip's own blocks, optionally keeping chosen
blocks' outputs and attention probabilities), `project` (`ln_post`, `proj`), and the head bookkeeping the methods'
attentions share. `dense_clip_features` composes them with a method's last block (docs/method.md §3). Tokens are
batch-first everywhere here: [B, 1 + gh*gw, W], CLS first, patches row-major.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import nn

from .onednn_linear import linear as onednn_linear, onednn_applies
from .pos_embed import resize_pos_embed_offset

Linear = Callable[..., torch.Tensor]     # F.linear, or onednn_linear.linear for fp32 CPU projections


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


def linear_for(onednn: bool) -> Linear:
    return onednn_linear if onednn else F.linear


def embed_tokens(visual: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """x: [B, 3, H, W] CLIP-normalised -> (tokens [B, 1 + gh*gw, W] after `ln_pre`, grid (gh, gw) = floor(H / p),
    floor(W / p)). The position table is resized to the grid when it differs (pos_embed.py)."""
    tokens = visual.conv1(x)                                       # [B, W, gh, gw]
    b, width, gh, gw = tokens.shape
    tokens = tokens.flatten(2).transpose(1, 2)                     # [B, gh*gw, W]
    pos = visual.positional_embedding                              # [1 + side*side, W]
    pos = torch.cat([pos[:1], resize_pos_embed_offset(pos[1:], (gh, gw))])
    cls = visual.class_embedding.to(tokens.dtype).expand(b, 1, width)
    h = torch.cat([cls, tokens], dim=1) + pos.to(tokens.dtype)     # [B, 1 + gh*gw, W]
    return visual.ln_pre(visual.patch_dropout(h)), (gh, gw)


@dataclass
class TowerRun:
    """What `run_blocks` hands back: the tokens after the last block it ran, and what was asked of the blocks."""
    tokens: torch.Tensor                                               # [B, L, W]
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)     # block index -> its output [B, L, W]
    attention: dict[int, torch.Tensor] = field(default_factory=dict)   # block index -> probabilities [B, heads, L, L]


def run_blocks(visual: nn.Module, h: torch.Tensor, stop: int = -1, onednn: bool = False, keep: Iterable[int] = (),
               attention: Iterable[int] = ()) -> TowerRun:
    """open_clip's blocks `resblocks[:stop]` on batch-first tokens h [B, L, W] (by default all but the last).

    keep: block indices (0-based) whose outputs to return; attention: block indices whose per-head attention
    probabilities softmax(q kᵀ / sqrt(d)) to return (those blocks are computed by hand, same maths).
    """
    lin = linear_for(onednn)
    keep, attention = set(keep), set(attention)
    transformer = visual.transformer
    first = not getattr(transformer, "batch_first", True)
    if first:
        h = h.transpose(0, 1)
    # Under autocast nn.MultiheadAttention leaves its fast path; its slow path then projects a transposed,
    # non-contiguous [L, B, W] view, which bf16 matmul on CPU serves by expanding the weight into an
    # [L, W, 3W] copy per block (~60 % of a bf16 crop). `_residual_block` computes the same block with
    # contiguous batch-first projections. The fast path also hides its projections from oneDNN. Otherwise
    # open_clip's own blocks (fast path) run.
    sdpa_blocks = not first and (
        torch.is_autocast_enabled(h.device.type) or (onednn and onednn_applies(h, transformer.resblocks[0].attn.in_proj_weight)))
    run = TowerRun(h)
    for index, block in enumerate(transformer.resblocks[:stop]):
        if index in attention:
            x = h.transpose(0, 1) if first else h
            x, run.attention[index] = _residual_block_with_attention(block, x, lin)
            h = x.transpose(0, 1) if first else x
        elif sdpa_blocks and _is_plain_block(block):
            h = _residual_block(block, h, lin)
        else:
            h = block(h)                                           # open_clip's own block, unchanged
        if index in keep:
            run.outputs[index] = h.transpose(0, 1) if first else h
    run.tokens = h.transpose(0, 1) if first else h
    return run


def project(visual: nn.Module, tokens: torch.Tensor, linear: Linear = F.linear) -> torch.Tensor:
    """[B, n, W] tokens -> `ln_post`, then `proj` when the tower has one: [B, n, D_out] (not normalised)."""
    out = visual.ln_post(tokens)
    return out if visual.proj is None else linear(out, visual.proj.t())


def dense_clip_features(visual: nn.Module, x: torch.Tensor, last_block: nn.Module, feats: torch.Tensor | None = None,
                        onednn: bool = False) -> torch.Tensor:
    """CLIP's image tower with the method's last block, for dense prediction (docs/method.md §3).

    visual: open_clip `VisionTransformer`; x: [B, 3, H, W] CLIP-normalised; last_block: the method's replacement of
    the last residual block (a `proxyclip.method.last_block.LastBlock`); feats: [B, C, h, w] VFM features when it needs them.
    onednn: fp32 CPU projections through oneDNN (`onednn_linear`), including the attention's packed ones.
    Returns L2-normalised embeddings [B, D_out, gh', gw'], one per position of the block's output grid (the VFM's
    grid for ProxyCLIP, CLIP's token grid otherwise).
    """
    lin = linear_for(onednn)
    h, grid = embed_tokens(visual, x)
    h = run_blocks(visual, h, onednn=onednn).tokens
    out, grid = last_block(visual.transformer.resblocks[-1], h, grid, lin, feats)   # [B, n, W] patch tokens
    out = F.normalize(project(visual, out, lin), dim=-1)
    return out.transpose(1, 2).reshape(x.shape[0], out.shape[-1], *grid)


def _is_plain_block(block: nn.Module) -> bool:
    """An open_clip `ResidualAttentionBlock` whose attention `_residual_block` reproduces exactly."""
    attn = getattr(block, "attn", None)
    return (isinstance(block, ResidualAttentionBlock) and not hasattr(block, "ln_1_kv")
            and isinstance(attn, nn.MultiheadAttention) and attn.batch_first and attn._qkv_same_embed_dim
            and attn.bias_k is None and not attn.add_zero_attn and not block.training)


def _residual_block(block: nn.Module, x: torch.Tensor, lin: Linear = F.linear) -> torch.Tensor:
    """open_clip's `ResidualAttentionBlock.forward` (eval, no mask) on batch-first x: [B, L, W] -> [B, L, W].

    The attention is nn.MultiheadAttention's own computation (packed in-projection, softmax(q kᵀ / sqrt(d)) v
    per head, out-projection), with the in-projection on the contiguous [B, L, W] input; `lin` computes
    the two projections (F.linear or `onednn_linear.linear`).
    """
    q, k, v = split_heads(block, x, lin)                                                 # 3 x [B, heads, L, hd]
    x = x + block.ls_1(merge_heads(block, F.scaled_dot_product_attention(q, k, v), lin))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def _residual_block_with_attention(block: nn.Module, x: torch.Tensor, lin: Linear = F.linear
                                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """`_residual_block` with its attention probabilities kept: ([B, L, W], softmax((q s) kᵀ) [B, heads, L, L]).
    q is scaled before the product, as nn.MultiheadAttention (and ResCLIP's hand-written block) does."""
    q, k, v = split_heads(block, x, lin)
    probs = torch.softmax((q * scale_of(block)) @ k.transpose(-1, -2), dim=-1)
    x = x + block.ls_1(merge_heads(block, probs @ v, lin))
    return x + block.ls_2(block.mlp(block.ln_2(x))), probs


def in_dtype_of(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x in the dtype of `encoder`'s weights (under autocast they stay float32: x is left to autocast)."""
    return x.to(next(encoder.parameters()).dtype)
