"""CorrCLIP's operations on region masks (Zhang et al., ICCV 2025, github zdk258/CorrCLIP, folder CorrCLIPv1;
proxyclip/methods/corrclip/README.md): DINO's q + k, mask merging, scope reconstruction, the semantic branch's attention
mask, the vote.

A region mask is an int64 map [H, W] of region ids; its smallest value is the union of the unsegmented pixels
(corrclip_segmentor.py:275-276, whatever that value is: 0 for SAM2's masks, the smallest id in a crop without
unsegmented pixels). Line numbers are the original's: open_clip/transformer.py (T) and corrclip_segmentor.py (S).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: the id of the padding the original gives a crop's region mask (S:160): a region of its own
PAD_REGION = 10000
#: merged regions are renumbered from here (T:562, `cluster_v + 10000`)
MERGED_BASE = 10000


def query_plus_key(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The VFM's last-block q, k [B, heads, d, h, w] (`VFMAdapter.last_block_qkv`) -> q + k, heads concatenated,
    [B, heads * d, h, w]: what the original's hook on DINO's last `attn.qkv` gives (S:88-89, S:104-112)."""
    return (q + k).flatten(1, 2)


def nearest(regions: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[H, W] int64 ids -> [h, w] with F.interpolate's "nearest" on the ids as floats, as T:545/T:582/S:194 do."""
    return F.interpolate(regions[None, None].float(), size=size, mode="nearest")[0, 0].long()


def dbscan_single_linkage(distance: torch.Tensor, eps: float) -> torch.Tensor:
    """sklearn's DBSCAN(eps, min_samples=1, metric="precomputed").fit_predict(distance) (T:556-557): [n, n] -> [n]
    cluster ids.

    With min_samples=1 every point is a core point, so DBSCAN is the connected components of the graph whose edges
    are distance[i, j] <= eps (sklearn's radius neighbourhood is inclusive), numbered in the order of their first
    member. Walked as sklearn's `dbscan_inner` walks it (row i's neighbours, depth first), so that a distance
    matrix that rounding left slightly asymmetric gets the same ids; no point is noise (-1).
    """
    adjacency = (distance <= eps).cpu().numpy()
    n = adjacency.shape[0]
    labels = [-1] * n
    label = 0
    for seed in range(n):
        if labels[seed] != -1:
            continue
        stack = [seed]
        while stack:
            i = stack.pop()
            if labels[i] != -1:
                continue
            labels[i] = label
            stack.extend(j for j in adjacency[i].nonzero()[0].tolist() if labels[j] == -1)
        label += 1
    return torch.tensor(labels, dtype=torch.long, device=distance.device)


def merge_regions(regions: torch.Tensor, feats: torch.Tensor, eps: float) -> torch.Tensor:
    """Mask merging (T:544-562): regions [h, w] on the VFM's grid, feats [h*w, C] unit VFM features -> [h, w].

    With more than two regions, each region but the first (the unsegmented one) is described by its unit mean
    feature; regions whose cosine lies within `eps` of the largest cosine are chained into one (DBSCAN), and a
    chain's regions get the id MERGED_BASE + its number. The unsegmented region keeps its id.
    """
    values, inverse = torch.unique(regions, return_inverse=True)
    if values.numel() <= 2:
        return regions
    flat = inverse.flatten()
    sums = feats.new_zeros(values.numel(), feats.shape[1]).index_add_(0, flat, feats)
    counts = torch.bincount(flat, minlength=values.numel()).to(feats.dtype)
    means = F.normalize(sums / counts[:, None], dim=1)[1:]                     # [R - 1, C], the unsegmented dropped
    similarity = means @ means.T
    clusters = dbscan_single_linkage(similarity.max() - similarity, eps)      # [R - 1]
    new_ids = torch.cat([values[:1], clusters + MERGED_BASE])                 # region r -> its new id
    return new_ids[inverse]


def scope_attention(feats: torch.Tensor, regions: torch.Tensor, tau: float) -> torch.Tensor:
    """Value and scope reconstruction (T:541-542, 564-578): feats [N, C] unit VFM features, regions [N] ids (after
    merging) -> attention [N, N] = softmax(tau * cos) over the allowed pairs.

    Allowed: two patches of the same segmented region; and a pair with at least one patch in the unsegmented region
    (the smallest id) whose cosine exceeds the mean cosine of the whole matrix (the original's "method 1", T:570-576).
    """
    similarity = feats @ feats.T                                              # [N, N]
    unsegmented = regions == regions.min()
    same = (regions[:, None] == regions[None, :]) & ~unsegmented[:, None]
    touching = (unsegmented[:, None] | unsegmented[None, :]) & (similarity > similarity.mean())
    similarity = similarity.masked_fill(~(same | touching), float("-inf"))
    return (similarity * tau).softmax(dim=-1)


def semantic_attention_mask(members: torch.Tensor) -> torch.Tensor:
    """The semantic branch's mask (T:581-593): members [R, n] bool, region r's patches on CLIP's grid -> [R+1+n,
    R+1+n] bool, True where attention is NOT allowed (nn.MultiheadAttention's convention).

    The sequence is the R mask class tokens, CLS, then the n patches. CLS and patches attend to each other only (never
    to a mask class token, so their outputs are CLIP's own); mask class token r attends to CLS and to region r's
    patches only (not to itself).
    """
    r, n = members.shape
    allowed = torch.zeros(r + 1 + n, r + 1 + n, dtype=torch.bool, device=members.device)
    allowed[r:, r:] = True
    allowed[:r, r] = True
    allowed[:r, r + 1:] = members
    return ~allowed


def spatial_blocks(num_layers: int, num_spatial: int | None = None) -> range:
    """The blocks (0-based) whose outputs the spatial branch averages (T:529-537, 595-600): the `num_spatial` blocks
    ending at the third last, num_spatial 5 / 12 / 28 for 12 / 24 / 32 blocks and num_layers - 4 otherwise."""
    if num_spatial is None:
        num_spatial = {12: 5, 24: 12, 32: 28}.get(num_layers, num_layers - 4)
    first = max(num_layers - 2 - num_spatial, 0)
    return range(first, num_layers - 2)


def region_vote(labels: torch.Tensor, regions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The map correction (S:216-222): labels [H, W] int64, regions [H, W] ids -> [H, W]: in every region but
    the smallest id's, every pixel gets the region's most frequent label; a tie goes to the smallest label, as CPU
    `torch.mode` breaks it (CUDA's tie-break is not documented)."""
    values, inverse = torch.unique(regions, return_inverse=True)
    counts = torch.bincount((inverse * num_classes + labels).flatten(), minlength=values.numel() * num_classes)
    mode = counts.view(values.numel(), num_classes).argmax(dim=1)     # argmax: the first (smallest) of the largest
    return torch.where(inverse > 0, mode[inverse], labels)
