"""PAMR, pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), as SCLIP and NACLIP run it on logits.

Each step replaces every pixel's scores by a weighted sum of its 8 neighbours' at each dilation (the border pixels
repeated outwards). The weights come from the guide image alone: for neighbour n of pixel p, per colour channel,
-|I(p) - I(n)| / (1e-8 + 0.1 * std), where std is the standard deviation of that channel over the 9 pixels of
every dilation's 3 x 3 neighbourhood of p (the 9 x len(dilations) values, the centre counted once per dilation,
unbiased); the mean over the channels, then a softmax over the 8 * len(dilations) neighbours.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]   # the 8 neighbours, row-major


def _neighbours(x: torch.Tensor, dilations: Sequence[int], centre: bool = False) -> torch.Tensor:
    """x [B, C, H, W] -> [B, C, P, H, W]: each pixel's neighbours at each dilation (border replicated), P = 8 (or 9
    with the centre) per dilation, dilations in order."""
    h, w = x.shape[-2:]
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)] if centre else _OFFSETS
    out = []
    for d in dilations:
        padded = F.pad(x, [d] * 4, mode="replicate")
        out += [padded[..., d + dy * d: d + dy * d + h, d + dx * d: d + dx * d + w] for dy, dx in offsets]
    return torch.stack(out, dim=2)


def pamr_affinity(image: torch.Tensor, dilations: Sequence[int]) -> torch.Tensor:
    """image [B, 3, H, W] -> neighbour weights [B, 1, 8 * len(dilations), H, W], summing to 1 over neighbours."""
    std = _neighbours(image, dilations, centre=True).std(dim=2, keepdim=True)          # [B, 3, 1, H, W]
    difference = (image.unsqueeze(2) - _neighbours(image, dilations)).abs()             # [B, 3, P, H, W]
    return (-difference / (1e-8 + 0.1 * std)).mean(dim=1, keepdim=True).softmax(dim=2)


def pamr(image: torch.Tensor, scores: torch.Tensor, steps: int, dilations: Sequence[int] = (8, 16)) -> torch.Tensor:
    """Refine `scores` [B, Q, H, W] (logits at the image's size) guided by `image` [B, 3, H, W]; `steps` rounds."""
    affinity = pamr_affinity(image.float(), dilations)
    scores = scores.float()
    for _ in range(steps):
        scores = (_neighbours(scores, dilations) * affinity).sum(dim=2)
    return scores
