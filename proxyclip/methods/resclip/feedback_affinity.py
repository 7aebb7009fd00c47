"""ResCLIP's semantic feedback (SFR; Yang et al., CVPR 2025; proxyclip/methods/resclip/README.md §5): a crop's temporary
segmentation turned into a patch-to-patch affinity that the last block's final pass mixes into its similarity.

    probabilities [B, Q, H, W] --query_labels--> labels [B, H, W] --patch_votes--> votes [B, gh, gw]
    votes --feedback_affinity--> [B, N, N] (N = gh*gw, patches row-major; same label, decayed where the straight
    path leaves the label, blurred along the key index, row-normalised)

Labels are query indices (a class's synonyms are different labels), as the original's. Everything here is exact
integer or elementwise work: batching crops changes no value.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: sampled points per chunk of the path check (bounds its memory: ~ 8 bytes x 2 x this per chunk)
_PATH_CHUNK = 1 << 22


def query_labels(probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """probs [B, Q, H, W] -> [B, H, W] int64: the most probable query (the first on a tie), 0 where its probability
    is below `threshold` (query 0, the vocabulary's first name, as the original: model.py:110-116)."""
    labels = probs.argmax(dim=1)
    return labels.masked_fill_(probs.amax(dim=1) < threshold, 0)


def patch_votes(labels: torch.Tensor, patch: int, num_labels: int) -> torch.Tensor:
    """labels [B, H, W] int64 in [0, num_labels) -> [B, H // patch, W // patch]: the most frequent label of each
    patch x patch block (rows and columns beyond the last whole block are not counted; model.py:119-124).

    On a tie the SMALLEST label wins. The original takes `torch.mode`, whose tie-break is not documented and differs
    between CPU (smallest value) and CUDA, where it ran; this is a defined rule, equal to CPU's torch.mode.
    """
    b, h, w = labels.shape
    gh, gw = h // patch, w // patch
    blocks = labels[:, :gh * patch, :gw * patch].reshape(b, gh, patch, gw, patch).transpose(2, 3)
    blocks = blocks.reshape(b, gh * gw, patch * patch)                                  # [B, N, p*p]
    counts = torch.zeros(b, gh * gw, num_labels, dtype=torch.int64, device=labels.device)
    counts.scatter_add_(2, blocks, torch.ones_like(blocks))                             # [B, N, labels]
    return counts.argmax(dim=2).view(b, gh, gw)                                         # argmax: first maximum


def chebyshev_steps(grid: tuple[int, int], device=None) -> torch.Tensor:
    """[N, N] int64: max(|row_i - row_j|, |col_i - col_j|) between patches i and j (row-major)."""
    index = torch.arange(grid[0] * grid[1], device=device)
    pos = torch.stack([index // grid[1], index % grid[1]], dim=1)                       # [N, 2] (row, col)
    return (pos[:, None] - pos[None]).abs().amax(dim=-1)


def straight_path_valid(votes: torch.Tensor) -> torch.Tensor:
    """votes [B, gh, gw] -> [B, N, N] bool: whether the straight path from patch i to patch j stays on i's label
    (`check_path`, model.py:130-148), reproduced to the bit.

    With S = max(gh, gw) - 1 (the largest Chebyshev distance on the grid) and t = linspace(0, 1, S + 1) in float32,
    the points round(pos_i * (1 - t_m) + pos_j * t_m) (float32, half to even) are sampled for m = 0..S, and only
    those with m <= steps(i, j) are checked. For a pair closer than S the checked points are therefore the part of
    the segment nearest i (a fraction steps / S of it), not the whole path: the original's rule, kept.
    """
    b, gh, gw = votes.shape
    n, last = gh * gw, max(gh, gw) - 1
    device = votes.device
    index = torch.arange(n, device=device)
    pos = torch.stack([index // gw, index % gw], dim=1).to(torch.float32)               # [N, 2]
    t = torch.linspace(0, 1, last + 1, dtype=torch.float32, device=device)[None, :, None]   # [1, S+1, 1]
    steps = chebyshev_steps((gh, gw), device)                                           # [N, N]
    checked = torch.arange(last + 1, device=device) <= steps[..., None]                 # [N, N, S+1]
    flat = votes.reshape(b, n)
    valid = torch.empty(b, n, n, dtype=torch.bool, device=device)
    rows = max(1, _PATH_CHUNK // (n * (last + 1)))
    for start in range(0, n, rows):
        i = slice(start, start + rows)
        # the original's expression and order: start * (1 - t) + end * t, each product rounded to float32
        points = (pos[i, None, None] * (1 - t) + pos[None, :, None] * t).round().long()   # [r, N, S+1, 2]
        sampled = flat[:, points[..., 0] * gw + points[..., 1]]                       # [B, r, N, S+1]
        same = sampled == flat[:, i, None, None]
        valid[:, i] = (same | ~checked[i]).all(dim=-1)
    return valid


def blur_keys(affinity: torch.Tensor, std: float) -> torch.Tensor:
    """affinity [B, N, N] -> [B, N, N]: each row convolved with a normalised 1-D Gaussian along the key index j (the
    flattened row-major patch order, not the 2-D grid; model.py:216-230). Size min(N, int(6 std + 1)), made odd;
    zero padding, so the output keeps N columns."""
    b, n, _ = affinity.shape
    size = min(n, int(6 * std + 1))
    size += 1 - size % 2
    x = (torch.arange(size, device=affinity.device) - size // 2).to(affinity.dtype)
    kernel = torch.exp(-(x ** 2) / (2 * std ** 2))
    kernel = kernel / kernel.sum()
    return F.conv1d(affinity.reshape(b * n, 1, n), kernel.view(1, 1, -1), padding=size // 2).view(b, n, n)


def feedback_affinity(votes: torch.Tensor, std: float, check_paths: bool = True,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """votes [B, gh, gw] (a label per patch) -> S [B, N, N] in `dtype` (`generate_attention_sfr`, model.py:152-238):

    S0[i, j] = 1 if i and j have the same label; with `check_paths` (the original's delete_same_entity) the pairs
    whose straight path leaves i's label are decayed by exp(-steps(i, j) / S) (S as in `straight_path_valid`);
    then `blur_keys`, relu, and each row divided by (its sum + 1e-8). The CLS row and column are the caller's.
    """
    b, gh, gw = votes.shape
    flat = votes.reshape(b, gh * gw)
    affinity = (flat[:, :, None] == flat[:, None, :]).to(dtype)                         # diagonal 1
    if check_paths:
        steps = chebyshev_steps((gh, gw), votes.device)
        decay = torch.exp(-steps.to(dtype) / max(max(gh, gw) - 1, 1))   # a 1 x 1 grid: no pair to decay
        affinity = torch.where(straight_path_valid(votes), affinity, affinity * decay)
    affinity = F.relu(blur_keys(affinity, std))
    return affinity / (affinity.sum(dim=-1, keepdim=True) + 1e-8)
