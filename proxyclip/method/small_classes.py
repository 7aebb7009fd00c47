"""SCLIP's area threshold: classes that win too few pixels are removed before the decision (proxyclip/methods/sclip/README.md)."""
from __future__ import annotations

import torch


def suppress_small_classes(probs: torch.Tensor, area_thd: float) -> torch.Tensor:
    """probs [C, H, W] -> the same with every class c >= 1 whose argmax area is not larger than `area_thd` times the
    pixels won by non-background classes set to 0 everywhere (its pixels go to the next most probable class).
    Class 0, the background, is never removed."""
    winners = probs.argmax(dim=0).flatten()                                           # [H * W]
    areas = probs.new_zeros(probs.shape[0]).scatter_add_(0, winners, probs.new_ones(winners.shape))[1:]  # no host sync
    keep = (areas > area_thd * areas.sum()).to(probs.dtype)
    return torch.cat([probs[:1], probs[1:] * keep.view(-1, 1, 1)])
