"""CASS's operations (Kim et al., CVPR 2025; proxyclip/methods/cass/README.md), each as the original computes it.

- `cass_vfm_pixels`: the VFM input CASS derives from CLIP's (an ImageNet inverse with a 0.255 typo, uint8
  truncation, PIL resize to a square, DINO's ToTensor / Normalize), not our shared `vfm_input`;
- `spectral_blend`: per head, CLIP's key-key logits blended with a low-rank, range-matched copy of the VFM's, head
  pairs from a Hungarian matching of their eigenvalue spectra; `svd_draws`: the generator its randomised SVD draws from;
- `text_clusters` / `adjust_text`: Ward clusters of the query embeddings, and per crop the query of each cluster
  closest to the image pulled towards its two best-matching patches.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from proxyclip.errors import ProxyCLIPError

#: the original's inverse normalisation (cass_segmentor.py:78-81): ImageNet's mean and std, the last std 0.255 (sic)
INVERSE_MEAN = (0.485, 0.456, 0.406)
INVERSE_STD = (0.229, 0.224, 0.255)
K_EIGEN = 20          # eigenvalues per spectrum (clip/model.py:256)
SCALE_FACTOR = 10.0   # the VFM term's weight per unit of matching (clip/model.py:255)
RANK = 10             # svd_lowrank's q: optimal_q returns at its first q, 10 (clip/model.py:206-220)


def cass_vfm_pixels(x: torch.Tensor, vfm_mean: torch.Tensor, vfm_std: torch.Tensor) -> torch.Tensor:
    """CLIP's input x [B, 3, h, w] -> the VFM's [B, 3, m, m], m = min(h, w) (cass_segmentor.py:78-81, 180-181;
    clip/model.py:107-108; dino/dino_attention.py:78-83).

    torchvision's Normalize(-mean/std, 1/std) with INVERSE_* (float32 constants: subtract, then divide), x 255,
    truncated to uint8, resized to a square with PIL's default filter (bicubic; the identity for a square crop, so
    skipped), then ToTensor (/ 255) and Normalize(vfm_mean, vfm_std). Values outside 0-255 (never from a real
    image, proxyclip/methods/cass/README.md) are clamped before the truncation, where numpy's cast is undefined.
    vfm_mean, vfm_std: [3, 1, 1] float32.
    """
    dev = x.device
    mean = torch.tensor([-m / s for m, s in zip(INVERSE_MEAN, INVERSE_STD)], dtype=torch.float32, device=dev)
    std = torch.tensor([1 / s for s in INVERSE_STD], dtype=torch.float32, device=dev)
    values = (x.float() - mean.view(3, 1, 1)) / std.view(3, 1, 1) * 255
    u8 = values.clamp_(0, 255).to(torch.uint8)                                  # truncation toward zero
    h, w = u8.shape[-2:]
    side = min(h, w)
    if (h, w) != (side, side):
        resized = [np.asarray(Image.fromarray(img.permute(1, 2, 0).cpu().numpy()).resize((side, side))) for img in u8]
        u8 = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).to(dev)
    return (u8.float() / 255 - vfm_mean) / vfm_std


def spectrum(adjacency: torch.Tensor, k: int = K_EIGEN) -> torch.Tensor:
    """[H, N, N] symmetric -> [H, min(k, N)]: the largest eigenvalues (eigvalsh in float64, descending), each row
    L2-normalised (compute_spectrum :223-232, :385-386)."""
    values = torch.linalg.eigvalsh(adjacency.double()).flip(-1)[:, :k]
    return F.normalize(values, p=2, dim=1)


def matching_cost(vfm_spectra: torch.Tensor, clip_spectra: torch.Tensor) -> torch.Tensor:
    """[H, k] x [H, k] -> cost [H, H] float32: cost[i, j] = 1 - sum |sort(a_i / |a_i|_1) - sort(c_j / |c_j|_1)|,
    a the VFM's, c CLIP's spectra (:388-398, stored in a float32 tensor as there)."""
    a = F.normalize(vfm_spectra, p=1, dim=-1).sort(dim=-1).values
    c = F.normalize(clip_spectra, p=1, dim=-1).sort(dim=-1).values
    return (1 - (a[:, None] - c[None]).abs().sum(-1)).float()


def range_match(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`source` mapped linearly so that its [min, max] is `target`'s (:344-351, :475-481)."""
    smin, smax, tmin, tmax = source.min(), source.max(), target.min(), target.max()
    return (source - smin) / (smax - smin) * (tmax - tmin) + tmin


def stretch(singular: torch.Tensor) -> torch.Tensor:
    """Singular values mapped from [min, max] to [0.5 min, 1.5 max] (_scale_singular_values :465-473)."""
    smin, smax = singular.min(), singular.max()
    return (singular - smin) / (smax - smin) * (1.5 * smax - 0.5 * smin) + 0.5 * smin


@contextmanager
def svd_draws(device: torch.device, seed: int, stream: dict[str, torch.Tensor] | None = None) -> Iterator[None]:
    """The generator one crop's randomised SVDs draw from (svd_lowrank calls torch.randn on `device`, so that device's
    global generator), restored afterwards: nothing else sees these draws or moves them.

    stream None ("per_crop"): seeded with `seed` for this crop, so a crop draws the same whatever the order, the
    batching or the number of processes. stream a dict ("one_stream", kept by the block for its run): one stream per
    device, seeded with `seed` at its first crop and its state stored after each crop, so the crops draw in the
    order they come, as the original's single process does (seeded once, configs/base_config.py:35; nothing else
    draws from its CUDA generator). Refused under torch.distributed with several processes (`one_process`).
    """
    cuda = device.type == "cuda"
    key = str(device)
    if stream is not None:
        one_process()
    state = None if stream is None else stream.get(key)
    with torch.random.fork_rng(devices=[device] if cuda else []):   # restores the generator set below
        if state is not None:                                       # the stream where the last crop left it
            if cuda:
                torch.cuda.set_rng_state(state, device)
            else:
                torch.random.set_rng_state(state)
        elif cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        else:
            torch.random.default_generator.manual_seed(seed)
        yield
        if stream is not None:
            stream[key] = torch.cuda.get_rng_state(device) if cuda else torch.random.get_rng_state()


def one_process() -> None:
    """Refuse svd_draws "one_stream" under torch.distributed with several processes: each would start its own stream
    on its share of the images, neither the original's draws nor the same run on another number of devices."""
    dist = torch.distributed
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world > 1:
        raise ProxyCLIPError(
            f"The cass method's svd_draws 'one_stream' continues one random stream from crop to crop in the order the "
            f"images come, as the original's single process does, but this run has {world} processes: each would "
            "start its own stream on its share of the images, so the draws would be neither the original's nor those "
            "of a run on another number of devices. Run it in one process (--trainer.devices 1), or use svd_draws "
            "'per_crop' (the default: each crop reseeded, the same on any number of devices).")


def spectral_blend(clip_keys: torch.Tensor, vfm_keys: torch.Tensor, scale: float, stretch_singular: bool,
                   generator_seed: int, stream: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """One crop's attention logits before the Gaussian (_apply_spectral_strategy :367-428): [H, N, d] x 2 -> [H, N, N].

    Wc = k kᵀ s (CLIP), Wd = kd kdᵀ s (the VFM's keys, already on CLIP's grid and range); heads paired by
    scipy's linear_sum_assignment on `matching_cost` (minimised). Head h takes, with c = col[h], w = 1 - cost[h, c]:
    R = rank-10 randomised SVD of Wd[c] (float64; singular values `stretch`ed when `stretch_singular`), diagonal
    zeroed, range-matched to Wc[h]; out[h] = (10 w R + Wc[h]) / (10 w + 1). Wd[c] with Wc[h] although the cost
    paired VFM head h with CLIP head c: the original's indices, kept. The SVD's random draws (one torch.randn per
    head) come from `svd_draws(device, generator_seed, stream)`: reseeded for this crop, or continuing one stream.
    """
    from scipy.optimize import linear_sum_assignment

    clip_logits = clip_keys @ clip_keys.transpose(-1, -2) * scale             # [H, N, N]
    vfm_logits = vfm_keys @ vfm_keys.transpose(-1, -2) * scale
    cost = matching_cost(spectrum(vfm_logits), spectrum(clip_logits))
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    out = torch.empty_like(clip_logits)
    rank = min(RANK, clip_logits.shape[-1])
    with svd_draws(clip_logits.device, generator_seed, stream):
        for h, c in zip(rows.tolist(), cols.tolist()):
            weight = (1 - cost[h, c]) * SCALE_FACTOR                            # float32, as the original's w_d * 10
            u, s, v = torch.svd_lowrank(vfm_logits[c].double(), q=rank, niter=2)
            low = u @ torch.diag(stretch(s) if stretch_singular else s) @ v.T   # float64
            low.fill_diagonal_(0)
            target = clip_logits[h]
            out[h] = (weight * range_match(low, target) + target) / (weight + 1)
    return out


def text_clusters(text: torch.Tensor, threshold: float) -> torch.Tensor:
    """[Q, E] unit query embeddings -> [Q] int64 cluster ids 0..K-1 (hierarchical_clustering :98-106): cosine
    distances in float64 (sklearn's: rows normalised, 1 - cosine, clipped to [0, 2], diagonal 0), Ward linkage on
    them (condensed), fcluster at distance `threshold`, minus 1. One query: one cluster (linkage needs two)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    if text.shape[0] < 2:
        return torch.zeros(text.shape[0], dtype=torch.long)
    rows = text.detach().double().cpu().numpy()
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    distances = np.clip(1 - rows @ rows.T, 0, 2)
    np.fill_diagonal(distances, 0)
    condensed = squareform(distances, checks=False)                            # the upper triangle
    labels = fcluster(linkage(condensed, method="ward"), t=threshold, criterion="distance") - 1
    return torch.from_numpy(labels.astype(np.int64))


def adjust_text(text: torch.Tensor, clusters: torch.Tensor, patches: torch.Tensor, similarity: torch.Tensor,
                alpha: float) -> torch.Tensor:
    """Per crop, the queries adjusted to it (hierarchical_prompt :138-173).

    text [Q, E] unit; clusters [Q] ids 0..K-1; patches [B, N, E] unit patch embeddings; similarity [B, Q] the
    global image-query similarity. In every cluster the query with the largest similarity (first on ties) is
    replaced by normalize((1 - alpha) t + alpha m), t its (renormalised) embedding, m the normalised mean of the 2
    patches most similar to t (topk, k = min(2, N)); the other queries are unchanged. -> [B, Q, E].
    """
    b, q = similarity.shape
    k = int(clusters.max()) + 1
    member = clusters.to(similarity.device)[None] == torch.arange(k, device=similarity.device)[:, None]   # [K, Q]
    masked = similarity[:, None, :].masked_fill(~member[None], float("-inf"))                           # [B, K, Q]
    best = masked.argmax(dim=-1)                                                                         # [B, K]
    t = F.normalize(text[best], dim=-1)                                                                  # [B, K, E]
    scores = torch.einsum("bke,bne->bkn", t, patches)
    top = scores.topk(min(2, patches.shape[1]), dim=-1).indices                                          # [B, K, 2]
    chosen = torch.gather(patches[:, None].expand(b, k, *patches.shape[1:]), 2,
                          top[..., None].expand(*top.shape, patches.shape[-1]))                          # [B, K, 2, E]
    mean = F.normalize(chosen.mean(dim=2), dim=-1)
    adjusted = F.normalize((1 - alpha) * t + alpha * mean, dim=-1)
    out = text[None].expand(b, q, text.shape[-1]).clone()
    out.scatter_(1, best[..., None].expand_as(adjusted), adjusted.to(out.dtype))
    return out
