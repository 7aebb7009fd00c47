"""Proxy attention (docs/method.md §3.4–3.5): VFM patch similarities become the attention of CLIP's last block."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def proxy_attention_weights(feats: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """Attention from VFM features, one matrix per image, shared by every head.

    feats: [B, C, h, w] -> A: [B, hw, hw], rows sum to 1 over keys.
    Every step after S works in place, so a crop holds one [hw, hw] matrix (SAM's 64 x 64 grid: 64 MiB).
    """
    fn = F.normalize(feats.flatten(2), dim=1)                  # [B, C, hw], unit columns
    attn = fn.transpose(1, 2) @ fn                             # S: [B, hw, hw] cosine similarity
    mean = attn.mean(dim=(1, 2), keepdim=True)                 # per image, never over the batch
    attn.sub_(beta * mean).mul_(gamma)                         # S' = gamma * (S - beta * mean(S))
    attn.masked_fill_(attn < 0, float("-inf"))                # keep only S' >= 0
    # softmax over keys, in place: exp(S' - max) / sum
    attn.sub_(attn.amax(dim=-1, keepdim=True)).exp_()
    return attn.div_(attn.sum(dim=-1, keepdim=True))


def proxy_attention(values: torch.Tensor, feats: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """O = A V for all heads at once.

    values: [B, D, gh, gw], CLIP's value projection of the patch tokens (heads concatenated along D);
    feats: [B, C, h, w] -> [B, h*w, D].
    The same A serves every head, and resizing V per head is resizing it per channel, so the heads need
    no loop: A [hw, hw] times V [hw, D] is every head's output, concatenated.
    """
    h, w = feats.shape[-2:]
    if values.shape[-2:] != (h, w):
        values = F.interpolate(values, size=(h, w), mode="bilinear", align_corners=False)
    attn = proxy_attention_weights(feats, beta, gamma)         # [B, hw, hw]
    return attn.to(values.dtype) @ values.flatten(2).transpose(1, 2)  # [B, hw, D]
