"""Trident's CLIP side (proxyclip/methods/trident/README.md): the whole-image resize, the DINO-guided last block over all
windows, and the windows spliced back onto the image's grid."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from proxyclip.method.clip_tower import Linear, merge_heads


def upsized(image: torch.Tensor, patch: int, crop: int) -> torch.Tensor:
    """seg_utils/utils.py:9-24 (preprocess_image): [B, 3, h, w] -> unchanged when both sides are multiples of
    `patch`; otherwise the longer side up to the next multiple, the shorter scaled with it (int(), then up to a
    multiple), each side at least `crop`, resized bilinearly (align_corners=False)."""
    h, w = image.shape[-2:]
    if h % patch == 0 and w % patch == 0:      # the original's early return: small images stay below `crop`
        return image
    longer = max(h, w)
    target = -(-longer // patch) * patch
    new_h, new_w = int(h * target / longer), int(w * target / longer)
    new_h, new_w = -(-new_h // patch) * patch, -(-new_w // patch) * patch
    return F.interpolate(image, (max(new_h, crop), max(new_w, crop)), mode="bilinear", align_corners=False)


def dino_guided_attention(block: nn.Module, tokens: torch.Tensor, grid: tuple[int, int], feats: torch.Tensor,
                          beta: float, gamma: float, linear: Linear) -> torch.Tensor:
    """open_clip/transformer.py:557-584 (custom_attn): the last block's values attended with DINO's patch cosine
    similarity, no residual, no MLP.

    block: CLIP's last `ResidualAttentionBlock`; tokens: [B, gh*gw, W] patch tokens entering it (CLS dropped);
    feats: [B, C, H, W] DINO's features. Similarity (sim - beta * mean(sim)) * gamma, the mean over EVERY window of
    the image at once (the original's torch.mean of the whole batch), negatives masked, softmax over keys, shared by
    the heads; CLIP's values resized bilinearly to DINO's grid. Returns [B, H*W, W] after the out-projection."""
    attn = block.attn
    b, n, width = tokens.shape
    heads, d = attn.num_heads, width // attn.num_heads
    qkv = linear(block.ln_1(tokens), attn.in_proj_weight, attn.in_proj_bias)
    v = qkv[..., 2 * width:].reshape(b, n, heads, d).permute(0, 2, 3, 1).reshape(b * heads, d, *grid)
    hv, wv = feats.shape[-2:]
    v = F.interpolate(v, size=(hv, wv), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    f = F.normalize(feats.flatten(2), dim=1)                                   # [B, C, H*W]
    sim = f.transpose(1, 2) @ f                                                # [B, H*W, H*W]
    sim = (sim - sim.mean() * beta) * gamma
    sim = sim.masked_fill(sim < 0.0, float("-inf")).softmax(dim=-1)
    out = sim[:, None] @ v.view(b, heads, hv * wv, d)                          # [B, heads, H*W, d]
    return merge_heads(block, out, linear)


def splice_windows(out: torch.Tensor, token_grid: tuple[int, int], vfm_grid: tuple[int, int],
                   boxes: list[tuple[int, int, int, int]], image_grid: tuple[int, int]) -> torch.Tensor:
    """open_clip/transformer.py:586-618: the windows' outputs on the whole image's grid, overlaps averaged.

    out: [B, H*W, W] per window on DINO's grid (H, W) = vfm_grid; token_grid: CLIP's (gh, gw); boxes: per window
    (y1, x1, y2, x2) in CLIP patches; image_grid: the whole image in CLIP patches. When DINO's width is no multiple
    of CLIP's, the windows are first resized bilinearly to CLIP's grid times round(H / gh) (ViT-H/14 with DINO /16).
    Returns [W, gh_img * r, gw_img * r]."""
    b, _, width = out.shape
    v = out.transpose(1, 2).reshape(b, width, *vfm_grid)
    if vfm_grid[1] % token_grid[1] != 0:
        ratio = int(round(vfm_grid[0] / token_grid[0]))
        v = F.interpolate(v, size=(token_grid[0] * ratio, token_grid[1] * ratio), mode="bilinear", align_corners=False)
    else:
        ratio = vfm_grid[1] // token_grid[1]
    canvas = v.new_zeros(width, image_grid[0] * ratio, image_grid[1] * ratio)
    count = v.new_zeros(1, *canvas.shape[1:])
    for window, (y1, x1, y2, x2) in zip(v, boxes):
        canvas[:, y1 * ratio:y2 * ratio, x1 * ratio:x2 * ratio] += window
        count[:, y1 * ratio:y2 * ratio, x1 * ratio:x2 * ratio] += 1
    return canvas / count


def guided(canvas: torch.Tensor, weights: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """open_clip/transformer.py:620-640: the spliced features [W, h, w] resized bilinearly to SAM's valid grid and
    mixed by SAM's weights [n, n] -> [n, W]. The original splits the width into heads and applies the same weights
    to each, which is one product."""
    v = F.interpolate(canvas[None], size=grid, mode="bilinear", align_corners=False)[0]
    return weights @ v.flatten(1).transpose(0, 1)
