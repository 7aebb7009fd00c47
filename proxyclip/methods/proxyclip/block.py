"""ProxyCLIP's last block (docs/method.md §3.3-3.5): the VFM's patch similarities are the attention of CLIP's values."""
from __future__ import annotations

import torch

from .proxy_attention import EmptyRows, proxy_attention
from proxyclip.method.clip_tower import Linear
from proxyclip.method.last_block.base import LAST_BLOCKS, LastBlock


@LAST_BLOCKS.register("proxyclip")
class ProxyAttention(LastBlock):
    """Values of the patch tokens only (CLS dropped), resized to the VFM grid, attended with the VFM's adaptive-
    normalised, masked similarity; the attention's out-projection; no residual, no MLP.

    Args:
        beta: adaptive-normalisation shift: S' = gamma * (S - beta * mean(S)).
        gamma: adaptive-normalisation scale.

    `empty_rows` ("nan" as the original, or "unmasked") follows the segmentor's numerics (`use_numerics`) (docs/method.md §3.4).
    """

    listed_at = 0    # its place in lists of methods (ProxyCLIP first, then the order they were added)

    title = "ProxyCLIP"    # its name in lists of methods (README, docs, help)
    summary = "proxy attention from the VFM's patch similarities"

    needs_vfm = True
    default_vfm = "dino_vitb8"   # the original's

    def __init__(self, beta: float = 1.2, gamma: float = 3.0):
        super().__init__()
        self.beta, self.gamma = beta, gamma
        self.empty_rows: EmptyRows = "unmasked"

    def use_numerics(self, numerics: str) -> None:
        # an emptied row: NaN as in the original, or left unmasked (docs/method.md §3.4)
        self.empty_rows = "nan" if numerics == "original" else "unmasked"

    def nan_possible(self, numerics: str) -> bool:
        return numerics == "original"

    def forward(self, block, tokens: torch.Tensor, grid: tuple[int, int], linear: Linear,
                feats: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        attn = block.attn
        b, _, width = tokens.shape
        y = block.ln_1(tokens)
        v_bias = None if attn.in_proj_bias is None else attn.in_proj_bias[2 * width:]
        v = linear(y[:, 1:], attn.in_proj_weight[2 * width:], v_bias)        # value projection only: [B, gh*gw, W]
        v = v.transpose(1, 2).reshape(b, width, *grid)
        out = proxy_attention(v, feats, self.beta, self.gamma, self.empty_rows)   # [B, h*w, W]
        return linear(out, attn.out_proj.weight, attn.out_proj.bias), tuple(feats.shape[-2:])
