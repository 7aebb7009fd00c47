"""SC-CLIP's operations on a crop's patch tokens (proxyclip/methods/scclip/README.md §3.3-§3.6), batched over crops.

Every op here works on a batch of crops [B, N, ...] and never mixes them: the LOF's neighbours and its quantile,
the similarity graphs and the attention's mean shift are each computed within one crop, so a crop's result does
not depend on the batch it runs in (the original runs one crop at a time, `lof_pytorch` only works for B = 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def lof_anomalies(x: torch.Tensor, n_neighbors: int = 30, contamination: float = 0.05) -> torch.Tensor:
    """x: [B, N, D] tokens -> [B, N] bool, the tokens whose LOF score is strictly above the crop's (1 - contamination)
    quantile (`clip/model.py:208-227`). SC-CLIP's own LOF, not the textbook one:

    - distances are SQUARED Euclidean distances;
    - each token's k-nearest neighbours: the `n_neighbors + 1` nearest, the first (the token itself, at distance 0)
      dropped; a duplicate of the token may take its place, which changes nothing (same row of distances, same LRD);
    - reachability uses the token's OWN k-distance, so LRD(p) = n_neighbors / mean(max(d(p, o), kdist(p)))
      = n_neighbors / kdist(p) (a NaN mean counts as 1e-6, as the original's `nan_to_num`);
    - LOF(p) = mean over p's neighbours o of LRD(o) / LRD(p);
    - threshold: `torch.quantile` (linear interpolation) of the crop's N scores, then a strict `>`.

    No token strictly above the quantile (all scores equal, or NaN scores: 31 identical tokens) -> no anomaly; the original crashes
    there (`mean_interpolation` on an empty index list).
    """
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x   # fp32 at least: no overflow of the squares
    # the difference form (not the |a|² + |b|² - 2ab matmul form): d(p, p) is exactly 0, as in the original
    dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").square()         # [B, N, N]
    knn_d, knn_i = torch.topk(dist, k=n_neighbors + 1, dim=-1, largest=False)              # ascending
    knn_d, knn_i = knn_d[..., 1:], knn_i[..., 1:]                                          # [B, N, K]
    k_distance = knn_d[..., -1:]                                                           # [B, N, 1] the token's own
    reach = torch.maximum(knn_d, k_distance)
    lrd = n_neighbors / torch.nan_to_num(reach.mean(dim=-1), nan=1e-6)                    # [B, N]
    neighbours_lrd = torch.gather(lrd, 1, knn_i.flatten(1)).view_as(knn_i)                 # [B, N, K] LRD(o)
    lof = (neighbours_lrd / lrd.unsqueeze(-1)).mean(dim=-1)                                # [B, N]
    threshold = torch.quantile(lof, 1 - contamination, dim=-1, keepdim=True)                # [B, 1] per crop
    return lof > threshold


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> the sum of each position's 8 neighbours, outside the grid counting as 0 (a 3 x 3 all-ones
    kernel with a zero centre on a zero-padded map, `clip/model.py:353-363`)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    return sum(padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def repair(tokens: torch.Tensor, anomalies: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """tokens [B, N, D] (patches, row-major on `grid`), anomalies [B, N] bool -> [B, N, D]: each anomaly replaced by
    the mean of its 8-neighbours that are not anomalies; an anomaly without such a neighbour, and every other
    token, unchanged (`mean_interpolation`, `clip/model.py:348-373`).

    Positions are row-major, (index // gw, index % gw). The original divides by the number of ROWS instead
    (`clip/model.py:257,275`), the same on the square grids of its 224 x 224 crops; on a non-square grid (whole-image
    mode, which no SC-CLIP config uses) it would repair the wrong tokens.
    """
    b, n, d = tokens.shape
    gh, gw = grid
    valid = (~anomalies).to(tokens.dtype).view(b, 1, gh, gw)                       # 1 = not an anomaly
    feature_map = tokens.transpose(1, 2).reshape(b, d, gh, gw)
    total = _neighbour_sum(feature_map * valid)                                    # [B, D, gh, gw]
    count = _neighbour_sum(valid)                                                  # [B, 1, gh, gw] valid neighbours
    mean = (total / count.clamp(min=1)).flatten(2).transpose(1, 2)                 # [B, N, D]
    replace = (anomalies & (count.flatten(1) > 0)).unsqueeze(-1)                   # [B, N, 1]
    return torch.where(replace, mean, tokens)


def cosine_graph(tokens: torch.Tensor) -> torch.Tensor:
    """[B, N, D] -> [B, N, N] cosine similarities of each crop's tokens (divided by the norms, as the original,
    `clip/model.py:284-285,294-295`)."""
    unit = tokens / tokens.norm(dim=-1, keepdim=True)
    return unit @ unit.transpose(1, 2)


def thresholded(similarity: torch.Tensor, threshold: float) -> torch.Tensor:
    """Entries below `threshold` set to 0 (`clip/model.py:287,296`)."""
    return similarity.masked_fill(similarity < threshold, 0.0)


def aggregate(tokens: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
    """tokens [B, N, D], graph [B, N, N] -> [B, N, D]: y_i = sum_j A_ij y_j / (sum_j A_ij + 1e-6)
    (`adaptively_aggregate`, `clip/model.py:343-346`)."""
    return (graph / (graph.sum(dim=-1, keepdim=True) + 1e-6)) @ tokens


def similarity_attention(similarity: torch.Tensor) -> torch.Tensor:
    """[B, N, N] unthresholded cosine graph -> [B, N, N] attention: softmax over each row of 3 (S - mean(S)), the
    entries where that is negative masked to -inf; mean(S) over the crop's whole N x N matrix
    (`custom_attn`, `clip/model.py:329-332`). The diagonal (cosine 1, above the mean) is never masked."""
    shifted = (similarity - similarity.mean(dim=(1, 2), keepdim=True)) * 3.0
    return torch.softmax(shifted.masked_fill(shifted < 0, float("-inf")), dim=-1)
