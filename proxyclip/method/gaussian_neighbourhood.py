"""NACLIP's Gaussian neighbourhood bias, shared by the methods that add it to their attention (NACLIP, ResCLIP, CASS;
proxyclip/methods/naclip/README.md)."""
from __future__ import annotations

import math

import torch


def gaussian_neighbourhood(grid: tuple[int, int], std: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """[1 + gh*gw, 1 + gh*gw] bias: exp(-|pos(p) - pos(q)|² / (2 std²)) between patches (row-major positions), 0 in the
    CLS row and column. As the original builds it: offsets scaled by 1 / (std sqrt(2)), squared, summed; computed in
    fp32 at least, returned in `dtype`."""
    gh, gw = grid
    work = torch.promote_types(dtype, torch.float32)
    rows, cols = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    pos = torch.stack([rows.flatten(), cols.flatten()], dim=1).to(work) / (std * math.sqrt(2))   # [N, 2]
    bias = torch.exp(-(pos[:, None] - pos[None]).square().sum(-1))                               # [N, N]
    return torch.nn.functional.pad(bias, (1, 0, 1, 0)).to(dtype)                                # CLS first: zeros
