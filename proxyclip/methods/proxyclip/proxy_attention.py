"""Proxy attention (docs/method.md §3.4–3.5): VFM patch similarities become the attention of CLIP's last block."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

EmptyRows = Literal["nan", "unmasked"]


def proxy_attention_weights(feats: torch.Tensor, beta: float, gamma: float, empty_rows: EmptyRows = "unmasked") -> torch.Tensor:
    """Attention from VFM features, one matrix per image, shared by every head.

    feats: [B, C, h, w] -> A: [B, hw, hw], rows sum to 1 over keys.
    empty_rows: a row whose every S' < 0 (e.g. a uniform crop: every token more similar than 1/beta to the mean)
        is "nan", masked whole as the original masks it (softmax over -inf only: NaN, the pixel's class then 0),
        or "unmasked", left as it is: its plain softmax of S' (docs/method.md §3.4).
    Every step after S works in place, so a crop holds one [hw, hw] matrix (SAM's 64 x 64 grid: 64 MiB).
    """
    fn = F.normalize(feats.flatten(2), dim=1)                  # [B, C, hw], unit columns
    attn = fn.transpose(1, 2) @ fn                             # S: [B, hw, hw] cosine similarity
    mean = attn.mean(dim=(1, 2), keepdim=True)                 # per image, never over the batch
    attn.sub_(beta * mean).mul_(gamma)                         # S' = gamma * (S - beta * mean(S))
    drop = attn < 0                                            # keep only S' >= 0 ...
    if empty_rows == "unmasked":
        drop &= ~drop.all(dim=-1, keepdim=True)                # ... unless nothing of the row would be left
    attn.masked_fill_(drop, float("-inf"))
    # softmax over keys, in place: exp(S' - max) / sum
    attn.sub_(attn.amax(dim=-1, keepdim=True)).exp_()
    return attn.div_(attn.sum(dim=-1, keepdim=True))


def proxy_attention(values: torch.Tensor, feats: torch.Tensor, beta: float, gamma: float,
                    empty_rows: EmptyRows = "unmasked") -> torch.Tensor:
    """O = A V for all heads at once.

    values: [B, D, gh, gw], CLIP's value projection of the patch tokens (heads concatenated along D);
    feats: [B, C, h, w] -> [B, h*w, D]; empty_rows: see `proxy_attention_weights`.
    The same A serves every head, and resizing V per head is resizing it per channel, so the heads need
    no loop: A [hw, hw] times V [hw, D] is every head's output, concatenated.
    """
    h, w = feats.shape[-2:]
    if values.shape[-2:] != (h, w):
        values = F.interpolate(values, size=(h, w), mode="bilinear", align_corners=False)
    attn = proxy_attention_weights(feats, beta, gamma, empty_rows)   # [B, hw, hw]
    return attn.to(values.dtype) @ values.flatten(2).transpose(1, 2)  # [B, hw, D]
