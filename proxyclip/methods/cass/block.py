"""CASS's last block and logits (Kim et al., CVPR 2025, github MICV-yonsei/CASS; proxyclip/methods/cass/README.md):
object-level context from a VFM's last-block keys (DINO ViT-B/8) distilled into CLIP's attention, and the text
adjusted per crop to the objects present.

Per crop: CLIP's blocks 0..10; the unchanged last block gives the crop's CLS embedding; the "reduced" last block (no
residual, no MLP, CLS dropped) attends with softmax(spectral_blend(k, kd) + G) over the patches, kd the VFM's keys
resized to CLIP's grid and range, G NACLIP's Gaussian; `ln_post`, `proj`. The text: in each Ward cluster of the
queries, the query closest to the global vector (the whole image's CLS embedding, or the crop's) is pulled towards
its two best patches; logits = (1 - w) cos(patch, query) + w cos(global, query).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from proxyclip.errors import ProxyCLIPError
from .ops import adjust_text, cass_vfm_pixels, range_match, spectral_blend, text_clusters
from proxyclip.method.vfm.base import offers_last_block_qkv
from proxyclip.method.clip_tower import embed_tokens, linear_for, merge_heads, project, run_blocks, scale_of, split_heads
from proxyclip.method.last_block.base import LAST_BLOCKS, Crops, LastBlock
from proxyclip.method.gaussian_neighbourhood import gaussian_neighbourhood

SCIPY_MISSING = ("The cass method needs scipy (its Hungarian head matching, scipy.optimize.linear_sum_assignment, and "
                 "its Ward clustering of the queries, scipy.cluster.hierarchy), which is not installed. Install it with "
                 "`pip install 'proxyclip[cass]'` (or `pip install 'scipy>=1.10'`), or choose another method.")


@LAST_BLOCKS.register("cass")
class SpectralObjectContext(LastBlock):
    """CASS (proxyclip/methods/cass/README.md). The per-benchmark options are set by configs/cass/<benchmark>.yaml; the
    defaults are the original segmentor's own (cass_segmentor.py:32-33; its default dataset voc20: no stretch).

    Args:
        global_semantics_weight: w in (1 - w) cos(patch, query) + w cos(global, query).
        mean_vector_weight: alpha, how far each cluster's chosen query moves towards its two best patches.
        h_threshold: the Ward clusters' cut distance (fcluster criterion "distance"); 0: one query per cluster
            unless two are identical.
        stretch_singular_values: stretch the VFM's singular values to [0.5 min, 1.5 max] (the original: every
            benchmark but VOC20 and Cityscapes).
        global_vector: "image": the whole image's CLS embedding through the unchanged CLIP, shared by its crops
            (the original in sliding windows); "crop": each crop's own (Cityscapes; VOC21's whole image).
        gaussian_std: the Gaussian neighbourhood's standard deviation in patches.
        seed: the seed of the randomised SVD's draws (torch.randn on the crop's device).
        svd_draws: "per_crop": the draws reseeded with `seed` for every crop, so a crop's result does not depend on
            the order, batching or number of processes. "one_stream": one stream seeded with `seed` at the block's
            first crop and continued crop after crop, as the original's run (seeded once with 42,
            configs/base_config.py:35); with seed 42, one process and the images in dataset order (data batch_size 1)
            the draws come in the original's order. The stream differs under another order or batching; several
            processes (DDP) are refused at the first crop.
    """

    listed_at = 50    # its place in lists of methods (ProxyCLIP first, then the order they were added)

    title = "CASS"    # its name in lists of methods (README, docs, help)
    summary = "key-key attention blended with the VFM's last-block keys, queries adjusted per crop"

    needs_vfm = True
    default_vfm = "dino_vitb8"   # the original's

    def __init__(self, global_semantics_weight: float = 0.0, mean_vector_weight: float = 0.0, h_threshold: float = 0.0,
                 stretch_singular_values: bool = False, global_vector: Literal["image", "crop"] = "image",
                 gaussian_std: float = 5.0, seed: int = 0, svd_draws: Literal["per_crop", "one_stream"] = "per_crop"):
        super().__init__()
        try:
            import scipy.cluster.hierarchy  # noqa: F401
            import scipy.optimize  # noqa: F401
        except ImportError:
            raise ProxyCLIPError(SCIPY_MISSING) from None
        if global_vector not in ("image", "crop"):
            raise ProxyCLIPError(f"The cass method's global_vector is 'image' or 'crop', not {global_vector!r}.")
        if svd_draws not in ("per_crop", "one_stream"):
            raise ProxyCLIPError(f"The cass method's svd_draws is 'per_crop' or 'one_stream', not {svd_draws!r}.")
        self.global_semantics_weight, self.mean_vector_weight = global_semantics_weight, mean_vector_weight
        self.h_threshold, self.stretch_singular_values = h_threshold, stretch_singular_values
        self.global_vector, self.gaussian_std, self.seed = global_vector, gaussian_std, seed
        self.svd_draws = svd_draws
        self._svd_stream: dict[str, torch.Tensor] = {}   # "one_stream": per device, the generator's state after a crop
        self._clusters: tuple[torch.Tensor, float, torch.Tensor] | None = None   # (text, threshold, [Q] ids)

    def check_encoders(self, visual: nn.Module, vfm: nn.Module | None) -> None:
        """Refuse a VFM whose keys cannot be paired with CLIP's heads: the original reshapes DINO's 12 x 64 keys to
        CLIP's heads and head width (clip/model.py:333), so both must be equal, and the VFM must give keys."""
        attn = visual.transformer.resblocks[-1].attn
        clip_heads = (attn.num_heads, attn.embed_dim // attn.num_heads)
        blocks = getattr(getattr(vfm, "model", None), "blocks", None)
        last = getattr(blocks[-1], "attn", None) if blocks is not None else None
        vfm_heads = (last.num_heads, last.head_dim) if hasattr(last, "head_dim") else None
        if vfm_heads is None or not offers_last_block_qkv(vfm):
            raise ProxyCLIPError(f"The cass method reads the VFM's last-block attention keys, which {type(vfm).__name__} "
                                 "does not give: use a timm ViT VFM (dino_vitb8, the original's; dino_*, dinov2_*, mae_*).")
        if vfm_heads != clip_heads:
            raise ProxyCLIPError(
                f"The cass method pairs the VFM's attention heads with CLIP's last block's, so both need the same heads "
                f"and head width: CLIP has {clip_heads[0]} heads of {clip_heads[1]}, the VFM {vfm_heads[0]} of "
                f"{vfm_heads[1]} (the original: 12 of 64 in both, CLIP ViT-B/16 and DINO ViT-B/8). Choose a VFM of "
                "CLIP's width and heads (vfm_kwargs embed_dim and num_heads for a random one).")

    def vfm_features(self, vfm: nn.Module, x: torch.Tensor, statistics: tuple[torch.Tensor, ...],
                     crop_size: int | None) -> torch.Tensor:
        """CASS's own VFM input (`cass_vfm_pixels`) -> the last block's keys [B, heads, d, m/p, m/p] (clip/model.py:
        315-333: `qkv[1]` per head without CLS, unscaled)."""
        pixels = cass_vfm_pixels(x, statistics[2], statistics[3])
        _, keys, _ = vfm.last_block_qkv(pixels.to(next(vfm.parameters()).dtype))
        return keys

    def reduced(self, block: nn.Module, tokens: torch.Tensor, grid: tuple[int, int], lin, keys: torch.Tensor) -> torch.Tensor:
        """tokens [B, 1 + N, W] entering the last block, keys [B, H, d, gh', gw'] the VFM's -> [B, N, W]
        (custom_attn :240-313): out_proj(softmax(spectral_blend + G) v) per head, CLS dropped everywhere."""
        _, k, v = split_heads(block, tokens, lin)                                     # [B, H, 1 + N, d]
        k, v = k[:, :, 1:], v[:, :, 1:]
        b, heads, n, d = k.shape
        kd = F.interpolate(keys.flatten(0, 1).to(k.dtype), size=grid, mode="bilinear", align_corners=False)
        kd = kd.view(b, heads, d, n).transpose(-1, -2)                                # [B, H, N, d]
        bias = gaussian_neighbourhood(grid, self.gaussian_std, k.device, k.dtype)[1:, 1:]   # no CLS row or column
        stream = self._svd_stream if self.svd_draws == "one_stream" else None
        logits = torch.stack([spectral_blend(k[i], range_match(kd[i], k[i]), scale_of(block),
                                             self.stretch_singular_values, self.seed, stream) for i in range(b)])
        return merge_heads(block, torch.softmax(logits + bias, dim=-1) @ v, lin)

    def forward(self, block, tokens, grid, linear, feats=None):
        return self.reduced(block, tokens, grid, linear, feats), grid

    def clusters(self, text: torch.Tensor) -> torch.Tensor:
        """[Q] Ward cluster ids of the queries, computed once per vocabulary (kept with the text they are for)."""
        cached = self._clusters
        if cached is None or cached[1] != self.h_threshold or cached[0].shape != text.shape \
                or not torch.equal(cached[0], text):
            ids = text_clusters(text, self.h_threshold).to(text.device)
            self._clusters = cached = (text, self.h_threshold, ids)
        return cached[2]

    def patches(self, crops: Crops) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """(the tokens entering the last block [B, 1 + N, W], the reduced block's unit patch embeddings [B, N, E],
        CLIP's grid (gh, gw)): blocks 0..10, `reduced`, `ln_post`, `proj` (clip/model.py:120-153)."""
        visual, lin = crops.visual, linear_for(crops.onednn)
        h, grid = embed_tokens(visual, crops.pixels)
        h = run_blocks(visual, h, onednn=crops.onednn).tokens                          # blocks 0..10
        out = self.reduced(visual.transformer.resblocks[-1], h, grid, lin, crops.feats)
        return h, F.normalize(project(visual, out, lin), dim=-1), grid

    def crop_logits(self, crops: Crops) -> torch.Tensor:
        """[B, Q, H, W] (forward_feature :176-212): patch-query cosines with the adjusted text, blended with the
        global image-query similarity, bilinear to the crop size."""
        visual, lin = crops.visual, linear_for(crops.onednn)
        h, patches, grid = self.patches(crops)
        if self.global_vector == "crop" or crops.images is None:
            cls = _unchanged_block(visual, visual.transformer.resblocks[-1], h)[:, 0]
        else:   # each image once: its crops share one tensor
            firsts = {id(image): image for image in crops.images}
            whole = {key: _image_cls(visual, image, crops.onednn) for key, image in firsts.items()}
            cls = torch.stack([whole[id(image)] for image in crops.images])
        text = crops.text.to(patches.dtype)
        similarity = F.normalize(project(visual, cls, lin), dim=-1) @ text.T           # [B, Q]
        adjusted = adjust_text(text, self.clusters(text), patches, similarity, self.mean_vector_weight)
        w = self.global_semantics_weight
        logits = (1 - w) * torch.einsum("bne,bqe->bqn", patches, adjusted) + w * similarity[..., None]
        logits = logits.view(*logits.shape[:2], *grid)
        return F.interpolate(logits, size=crops.pixels.shape[-2:], mode="bilinear", align_corners=False)

    def dense(self, crops: Crops) -> torch.Tensor:
        """[B, E, gh, gw] unit patch embeddings of the reduced block (before any text adjustment)."""
        _, out, grid = self.patches(crops)
        return out.transpose(1, 2).reshape(out.shape[0], out.shape[-1], *grid)


def _unchanged_block(visual: nn.Module, block: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """open_clip's own last block on batch-first tokens [B, L, W] -> [B, L, W]."""
    if getattr(visual.transformer, "batch_first", True):
        return block(h)
    return block(h.transpose(0, 1)).transpose(0, 1)


def _image_cls(visual: nn.Module, image: torch.Tensor, onednn: bool) -> torch.Tensor:
    """[3, h, w] CLIP-normalised whole image -> its CLS token after every block (position table resized to its
    grid): [W], before `ln_post` (cass_segmentor.py:195-198 with return_cls=True; clip/model.py:120-143)."""
    h, _ = embed_tokens(visual, image[None].to(next(visual.parameters()).dtype))
    return run_blocks(visual, h, stop=None, onednn=onednn).tokens[0, 0]
