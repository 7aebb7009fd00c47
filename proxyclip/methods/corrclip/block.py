"""CorrCLIP (Zhang et al., ICCV 2025, github zdk258/CorrCLIP, folder CorrCLIPv1; proxyclip/methods/corrclip/README.md):
CLIP's patch correlations rebuilt from region masks and DINO, two more branches, and a vote in each region.

Per window (one at a time: the semantic branch's token count differs per window), with the image's region mask cut
by the same window and padded with id 10000: DINO ViT-B/8's last-block q + k give unit features and their cosines;
regions whose mean features are close are merged (corrclip_ops.py); the attention is softmax(4 cos) within each
region (scope reconstruction); CLIP's last block applies it to its values of the main branch (the tokens entering
it) and of the spatial branch (the mean output of earlier blocks), on DINO's grid; the semantic branch runs one
mask class token per region through every block, each attending to CLS and its region only. features = main + alpha
spatial + beta semantic, after `ln_post`, then `proj`. After the decision, each region's labels are set to their mode.
Line numbers: open_clip/transformer.py (T), corrclip_segmentor.py (S).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from proxyclip.errors import ProxyCLIPError
from proxyclip.method.clip_tower import embed_tokens, in_dtype_of
from .ops import PAD_REGION, merge_regions, nearest, query_plus_key, region_vote, scope_attention, \
    semantic_attention_mask, spatial_blocks
from proxyclip.method.pixel_statistics import vfm_input
from .sam2_masks import mask_path, read_instance_mask
from .region_mask_files import region_mask_files
from .weights import named_sam2_weights, run_sam2_weights
from proxyclip.method.engine import Engine
from proxyclip.method.sliding_window import WindowBatch
from proxyclip.method.vfm.base import offers_last_block_qkv
from proxyclip.method.last_block.base import LAST_BLOCKS, Crops, ImageSource, ImageState, LastBlock, WholeImageLogits
from proxyclip.method.last_block.image_files import ImageFiles
from proxyclip.method.last_block.method_weights import MethodWeights

MASK_SOURCES = (
    "CorrCLIP needs a region mask for every image, from one of three sources: (1) method_kwargs.instance_mask_path, a "
    "folder of precomputed <image stem>.npz files with the key instance_mask (the original's layout is "
    "data/region_masks/<voc|context|coco|city|ade>, e.g. --model.segmentor.method_kwargs "
    "'{instance_mask_path: data/region_masks/voc}'); (2) method_kwargs mask_generator: sam2, SAM2 run on each image "
    "(`pip install .[sam2]` and SAM2's weights); (3) `proxyclip-masks`, which precomputes such a folder once for a "
    "data set (then use (1))")


@LAST_BLOCKS.register("corrclip")
class CorrCLIPBlock(LastBlock):
    """CorrCLIP (proxyclip/methods/corrclip/README.md). The defaults are the original's constants (T:528-539).

    Args:
        instance_mask_path: folder of `<image stem>.npz` region masks (key `instance_mask`, int ids at the image's
            original size, the smallest id the unsegmented pixels), as the original reads by default (S:278-281).
        mask_generator: "sam2": SAM2's automatic masks per image instead (S:263-272, 329-344); null: the folder.
        sam2_model: SAM2's config (the original's sam2_hiera_l).
        sam2_checkpoint: true: the official checkpoint of sam2_model, downloaded once (the original's
            sam2_hiera_large.pt); a path: a local SAM2 checkpoint; false: random weights (tests).
        sam2_overrides: Hydra overrides of SAM2's config, as sam2's build_sam2 takes them (tests: a tiny Hiera).
        points_per_side, pred_iou_thresh, stability_score_thresh, multimask_output: SAM2's automatic mask generator's
            settings (the original's: 8, 0.4, 0.4, false).
        sam2_half: SAM2 in fp16 under fp16 autocast, CUDA only (the original's `sam2.half()`); false: fp32, this
            harness's precision (proxyclip/methods/corrclip/README.md "Precision").
        alpha, beta: the spatial and the semantic branch's weights (T:528).
        tau: the softmax temperature of DINO's cosines (T:538).
        eps: DBSCAN's radius in 1 - cosine of the regions' mean features (T:539).
        num_spatial: how many blocks the spatial branch averages, ending at the third last; null: the original's
            5 / 12 / 28 for 12 / 24 / 32 blocks, else blocks - 4 (T:529-537).
    """

    listed_at = 80    # its place in lists of methods (ProxyCLIP first, then the order they were added)

    title = "CorrCLIP"    # its name in lists of methods (README, docs, help)
    summary = "DINO's correlations within region masks, spatial and semantic branches, a vote per region"
    common_exceptions = {"region vote": "CorrCLIP's last step sets each region mask's labels to their mode "
                                        "(refine_labels); the method has no option to run without it"}

    needs_vfm = True
    default_vfm = "dino_vitb8"   # the original's (configs/base_config.py:6)

    def __init__(self, instance_mask_path: str | None = None, mask_generator: Literal["sam2", None] = None,
                 sam2_model: str = "sam2_hiera_l", sam2_checkpoint: bool | str = True, points_per_side: int = 8,
                 pred_iou_thresh: float = 0.4, stability_score_thresh: float = 0.4, multimask_output: bool = False,
                 sam2_half: bool = False, alpha: float = 1.0, beta: float = 0.5, tau: float = 4.0, eps: float = 0.2,
                 num_spatial: int | None = None, sam2_overrides: list[str] | None = None):
        super().__init__()
        if mask_generator not in (None, "sam2"):
            raise ValueError(f"mask_generator is 'sam2' or null, not {mask_generator!r} (the original's Mask2Former, "
                             "EntitySeg and EoMT are not part of this harness). " + MASK_SOURCES)
        if instance_mask_path is None and mask_generator is None:
            raise ValueError("neither a region-mask folder nor a mask generator is given. " + MASK_SOURCES)
        if num_spatial is not None and num_spatial < 1:
            raise ValueError(f"num_spatial must be at least 1, not {num_spatial}")
        if mask_generator == "sam2":          # refused before any model is built: SAM2's options, then the package
            from .sam2_masks import SAM2_MODELS, check_generator_options, require_sam2
            if sam2_model not in SAM2_MODELS:
                raise ValueError(f"sam2_model is one of {', '.join(SAM2_MODELS)} (the original's sam2_hiera_l), not "
                                 f"{sam2_model!r}")
            check_generator_options(points_per_side, pred_iou_thresh, stability_score_thresh)
            require_sam2()
        self.instance_mask_path, self.mask_generator = instance_mask_path, mask_generator
        self.sam2_model, self.sam2_checkpoint, self.points_per_side = sam2_model, sam2_checkpoint, points_per_side
        self.pred_iou_thresh, self.stability_score_thresh = pred_iou_thresh, stability_score_thresh
        self.multimask_output, self.sam2_half = multimask_output, sam2_half
        self.sam2_overrides = list(sam2_overrides or ())
        self.alpha, self.beta, self.tau, self.eps, self.num_spatial = alpha, beta, tau, eps, num_spatial
        self._generator: list = []        # SAM2, built on first use; not a submodule (no state_dict keys)

    @classmethod
    def weights(cls, options: dict) -> list[MethodWeights]:
        """SAM 2's checkpoint where it makes the region masks itself (weights.py)."""
        return run_sam2_weights(options)

    @classmethod
    def image_files(cls, options: dict) -> ImageFiles | None:
        """The region masks read from a folder, one per image (region_mask_files.py)."""
        return region_mask_files(options)

    @classmethod
    def named_weights(cls) -> list[MethodWeights]:
        """Each official SAM 2 by its name (sam2_hiera_l, ...), for `proxyclip-masks`."""
        return named_sam2_weights()

    def check_encoders(self, visual: nn.Module, vfm: nn.Module | None) -> None:
        if not offers_last_block_qkv(vfm):
            raise ProxyCLIPError(f"The corrclip method reads q + k of the VFM's last attention block, which "
                                 f"{type(vfm).__name__} does not give: use a timm ViT VFM (dino_vitb8, the original's; "
                                 "dino_*, dinov2_*, mae_*).")

    whole_images_only = True    # no patch features without the image's region mask

    def forward(self, block, tokens, grid, linear, feats=None):
        raise ProxyCLIPError("The corrclip method computes whole images with their region masks (segmentor(images, "
                             "paths=...), segment, test, predict); it has no per-crop dense features without them.")

    def dense(self, crops: Crops) -> torch.Tensor:
        return self.forward(None, None, None, None)

    crop_logits = dense

    # --- region masks ---------------------------------------------------------------------------------------
    def region_mask(self, source: ImageSource) -> torch.Tensor:
        """The image's region ids [H, W] int64 at its original size (S:274-346)."""
        if self.mask_generator is None:
            if source.path is None:
                raise ProxyCLIPError("The corrclip method finds an image's region mask by its file name in "
                                     f"instance_mask_path ({self.instance_mask_path}), and this image came without a "
                                     "file (library use): set mask_generator: sam2 to compute masks for such images. "
                                     + MASK_SOURCES + ".")
            path = mask_path(self.instance_mask_path, source.path)
            if not path.is_file():
                raise ProxyCLIPError(f"No region mask for {source.path}: {path} does not exist (relative paths start at "
                                     f"the working folder {Path.cwd()}). " + MASK_SOURCES + ".")
            try:                  # the one npz reader (key, integer ids, a damaged file), with the three ways added
                mask = read_instance_mask(self.instance_mask_path, source.path)
            except ProxyCLIPError as exc:
                raise ProxyCLIPError(f"{exc} " + MASK_SOURCES + ".") from None
        else:
            mask = self.generated_mask(source)
        mask = mask.to(source.image.device)
        if tuple(mask.shape) != tuple(source.out_size):
            raise ProxyCLIPError(f"The region mask of {source.path or 'the image'} is {tuple(mask.shape)} pixels, but the "
                                 f"image's labels are {tuple(source.out_size)}: the vote needs a mask of the original "
                                 "image (as the original's data/region_masks). " + MASK_SOURCES + ".")
        return mask

    def generator(self, device: torch.device):
        """SAM2's automatic mask generator (proxyclip/method/sam2_masks.py), built on first use, on `device`."""
        if not self._generator:
            from .sam2_masks import SAM2MaskGenerator
            self._generator.append(SAM2MaskGenerator(
                model=self.sam2_model, checkpoint=self.sam2_checkpoint, points_per_side=self.points_per_side,
                pred_iou_thresh=self.pred_iou_thresh, stability_score_thresh=self.stability_score_thresh,
                multimask_output=self.multimask_output, half=self.sam2_half, hydra_overrides=self.sam2_overrides))
        return self._generator[0].to(device)

    def generated_mask(self, source: ImageSource) -> torch.Tensor:
        """SAM2's region ids [H, W] of the image file itself, read as the original reads it (PIL, RGB, full size,
        S:330-331), or, without a file, of the image given (uint8 RGB)."""
        generator = self.generator(source.image.device)
        if source.path is not None:
            return generator.mask_for_file(source.path)
        image = source.image
        return generator(image if image.dtype == torch.uint8 else (image.clamp(0, 1) * 255).round().to(torch.uint8))

    # --- the image --------------------------------------------------------------------------------------------
    def image_logits(self, engine: Engine, source: ImageSource) -> WholeImageLogits:
        """[Q, H, W] at source.out_size (predict S:183-198, forward_slide S:123-180) and the region mask for the vote:
        windows one at a time (the engine's iterator, batches of one), each with its cut of the region mask
        (nearest-resized to CLIP's input first, S:194), padded with id 10000 (S:156-160) as the crop with zeros."""
        regions = self.region_mask(source)
        x = engine.clip_normalised(source.image)                                    # [3, h, w]
        resized = nearest(regions, tuple(x.shape[-2:]))

        def logits_of(batch: WindowBatch) -> torch.Tensor:   # one padded window [1, 3, Hp, Wp] -> [1, Q, Hp, Wp]
            (y1, y2, x1, x2), pad = batch.windows[0], batch.pads[0]
            cut = F.pad(resized[y1:y2, x1:x2], pad, value=PAD_REGION)
            return self.window_logits(engine, batch.crops[0], cut)[None]

        # the canvas float32, or the encoders' dtype when wider (a float64 model)
        (canvas,) = engine.averaged_window_logits([x], logits_of, batch_size=1, widen=True)
        logits = F.interpolate(canvas[None], size=source.out_size, mode="bilinear", align_corners=False)[0]
        return WholeImageLogits(logits, RegionMask(regions))

    def window_logits(self, engine: Engine, crop: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """One padded window: crop [3, Hp, Wp] CLIP-normalised, regions [Hp, Wp] ids -> [Q, Hp, Wp] (S:92-121)."""
        qk = self.vfm_features(engine.vfm, crop[None], engine.statistics.for_vfm, engine.geometry.crop_size)[0]   # [C, gh, gw]
        feats = self.features(engine.visual, in_dtype_of(engine.visual, crop[None]), qk, regions)
        grid = qk.shape[-2:]
        logits = (F.normalize(feats, dim=-1) @ engine.text.to(feats.dtype).T).T.reshape(-1, *grid)
        return F.interpolate(logits[None], size=crop.shape[-2:], mode="bilinear", align_corners=False)[0]

    def vfm_features(self, vfm: nn.Module, x: torch.Tensor, statistics: tuple[torch.Tensor, ...],
                     crop_size: int | None) -> torch.Tensor:
        """ProxyCLIP's VFM input (S:96: unnormalise CLIP's, normalise DINO's) -> q + k [B, C, gh, gw]."""
        pixels = vfm_input(x, *statistics)
        q, k, _ = vfm.last_block_qkv(pixels.to(next(vfm.parameters()).dtype))
        return query_plus_key(q, k)

    def features(self, visual: nn.Module, pixels: torch.Tensor, qk: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """pixels [1, 3, Hp, Wp], qk [C, gh, gw] DINO's q + k, regions [Hp, Wp] -> patch features [gh*gw, D] (not
        normalised) on DINO's grid (T:506-634)."""
        grid = tuple(qk.shape[-2:])
        dino = F.normalize(qk.flatten(1).T, dim=-1)                                       # [N, C]  (S:110-112)
        merged = merge_regions(nearest(regions, grid), dino, self.eps)                   # T:544-562
        attn = scope_attention(dino, merged.flatten(), self.tau)                          # [N, N]

        tokens, token_grid = embed_tokens(visual, pixels)                                 # [1, 1 + n, W]
        on_tokens = nearest(merged, token_grid)                                           # T:582
        members = torch.stack([on_tokens == v for v in torch.unique(on_tokens)]).flatten(1)   # [R, n]
        r = members.shape[0]
        disallowed = semantic_attention_mask(members)
        # an additive mask: open_clip 3.x casts a bool attn_mask to the tokens' dtype (True -> 1.0, not -inf)
        mask = torch.zeros(disallowed.shape, dtype=tokens.dtype, device=tokens.device).masked_fill_(disallowed, float("-inf"))
        seq = torch.cat([tokens[:, :1].expand(1, r, -1), tokens], dim=1)                # mask class tokens, CLS, patches
        blocks = visual.transformer.resblocks
        kept = set(spatial_blocks(len(blocks), self.num_spatial))
        first = not getattr(visual.transformer, "batch_first", True)
        spatial = []
        for index, block in enumerate(blocks[:-1]):                                        # T:597-600
            seq = _block(block, seq, mask, first)
            if index in kept:
                spatial.append(seq[0, r:])
        last = blocks[-1]
        main_spatial = torch.stack([seq[0, r:], torch.stack(spatial).mean(0)])           # [2, 1 + n, W]
        attention = last.attn
        width = attention.embed_dim
        v = F.linear(last.ln_1(main_spatial), attention.in_proj_weight[2 * width:], attention.in_proj_bias[2 * width:])
        v = v[:, 1:].transpose(1, 2).reshape(2, width, *token_grid)                      # T:609-613
        v = F.interpolate(v, size=grid, mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)   # [2, N, W]
        main_spatial = attention.out_proj(attn.to(v.dtype) @ v)                           # T:614-616
        mct = _block(last, seq, mask, first)[0, :r]                                       # [R, W]  (T:619)
        spread = F.interpolate(members.view(r, 1, *token_grid).to(mct.dtype), size=grid, mode="nearest").flatten(1)
        semantic = spread.T @ mct                                                          # [N, W]  (T:620-622)
        normed = visual.ln_post(torch.cat([main_spatial, semantic[None]]))               # [3, N, W]  (T:627-630)
        out = normed[0] + self.alpha * normed[1] + self.beta * normed[2]
        return out if visual.proj is None else out @ visual.proj                           # T:632

    # --- the vote ----------------------------------------------------------------------------------------------
    def refine_labels(self, labels: torch.Tensor, probs: torch.Tensor, source: ImageSource) -> torch.Tensor:
        """Each region's labels (but the smallest id's) set to their mode (S:216-222), on the image's own mask."""
        regions = source.state.regions if isinstance(source.state, RegionMask) else self.region_mask(source)
        return region_vote(labels, regions.to(labels.device), probs.shape[0])


@dataclass(frozen=True)
class RegionMask(ImageState):
    """The image's region ids [H, W] int64 at its original size, read once for the windows and the vote."""
    regions: torch.Tensor


def _block(block: nn.Module, seq: torch.Tensor, mask: torch.Tensor, seq_first: bool) -> torch.Tensor:
    """open_clip's own block on [1, L, W] with an additive attention mask [L, L]."""
    if seq_first:
        return block(seq.transpose(0, 1), attn_mask=mask).transpose(0, 1)
    return block(seq, attn_mask=mask)

