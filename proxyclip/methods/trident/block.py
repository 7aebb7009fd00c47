"""Trident (Shi et al., ICCV 2025, github YuHengsss/Trident; proxyclip/methods/trident/README.md): CLIP's windows attended with
DINO's patch similarity, spliced onto the whole image, then mixed by SAM's last-block attention over the whole
image; optionally the labels refined by SAM's mask decoder prompted with each region.

Per image (trident.py:131-188): SAM sees the image file resized up to multiples of CLIP's patch (Cityscapes: each
half); CLIP sees the protocol-resized image (`upsized`) in crop x crop windows, each through blocks 0..L-2 and
`dino_guided_attention`; the windows spliced (`splice_windows`), resized to SAM's valid grid and mixed by
`sam_similarity`; `ln_post`, `proj`, cosine with the text on SAM's grid, bilinear to the output size.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from proxyclip.errors import ProxyCLIPError
from proxyclip.method.clip_tower import embed_tokens, linear_for, project, run_blocks
from proxyclip.method.engine import Engine
from .ops import dino_guided_attention, guided, splice_windows, upsized
from .refine import sam_refinement
from .sam import LastBlockAttention, build_sam, sam_guidance, sam_similarity
from .weights import sam_weights
from proxyclip.method.last_block.base import LAST_BLOCKS, ImageSource, ImageState, LastBlock, WholeImageLogits
from proxyclip.method.last_block.method_weights import MethodWeights


@LAST_BLOCKS.register("trident")
class TridentBlock(LastBlock):
    """Trident (proxyclip/methods/trident/README.md). Defaults: the original's base config (configs/base_config.py) and
    segmentor (trident.py:29-33); per benchmark configs/trident/<benchmark>.yaml.

    Args:
        beta, gamma: DINO's similarity becomes (sim - beta * mean) * gamma before masking and softmax.
        cos_fac: SAM's attention is kept where its value cosine exceeds cos_fac x the mean cosine of the query.
        refine_neg_cos: keep a negative threshold (true); false replaces it by 0.6.
        sam: segment-anything variant (vit_b, vit_l, vit_h).
        sam_checkpoint: true: the official checkpoint (downloaded once); a path: a local SAM .pth; false: random.
        sam_kwargs: override SAM's `ImageEncoderViT` arguments (tiny test models).
        sam_refinement: refine the labels with SAM's mask decoder (the README's evaluation, eval.py --sam_refine).
        coarse_thresh, minimal_area, sam_mask_coff, sam_iou_thresh: the refinement's (seg_utils/utils.py:92-196).
        split_halves: SAM sees the left and right halves separately (the original's Cityscapes case).
    """

    listed_at = 70    # its place in lists of methods (ProxyCLIP first, then the order they were added)

    title = "Trident"    # its name in lists of methods (README, docs, help)
    summary = "DINO-guided CLIP windows spliced and mixed by SAM's last-block attention, labels refined by SAM"
    post_processing_off = {"sam_refinement": False}   # the SAM refinement of the decided labels (refine_labels)

    needs_vfm = True
    default_vfm = "dino_vitb16"   # the original's torch.hub dino_vitb16 (trident.py:48)

    def __init__(self, beta: float = 1.2, gamma: float = 3.0, cos_fac: float = 1.2, refine_neg_cos: bool = True,
                 sam: str = "vit_b", sam_checkpoint: bool | str = True, sam_kwargs: dict | None = None,
                 sam_refinement: bool = True, coarse_thresh: float = 0.2, minimal_area: int = 225,
                 sam_mask_coff: float = 0.005, sam_iou_thresh: float = 0.8, split_halves: bool = False):
        super().__init__()
        if sam not in ("vit_b", "vit_l", "vit_h"):
            raise ValueError(f"sam is vit_b, vit_l or vit_h, not {sam!r}")
        if minimal_area < 0:
            raise ValueError(f"minimal_area is a pixel count (>= 0), not {minimal_area}")
        self.beta, self.gamma, self.cos_fac, self.refine_neg_cos = beta, gamma, cos_fac, refine_neg_cos
        self.sam, self.sam_checkpoint, self.sam_kwargs = sam, sam_checkpoint, sam_kwargs
        self.sam_refinement, self.coarse_thresh, self.minimal_area = sam_refinement, coarse_thresh, minimal_area
        self.sam_mask_coff, self.sam_iou_thresh, self.split_halves = sam_mask_coff, sam_iou_thresh, split_halves
        self.sam_model: nn.Module | None = None      # built with the encoders (check_encoders), not by option checks

    @classmethod
    def weights(cls, options: dict) -> list[MethodWeights]:
        """Its whole SAM (options sam, sam_checkpoint; weights.py)."""
        return sam_weights(options)

    def check_encoders(self, visual: nn.Module, vfm: nn.Module | None) -> None:
        """Build SAM once CLIP and the VFM are built (an option check builds this class without weights)."""
        from segment_anything import SamPredictor

        self.sam_model = build_sam(self.sam, self.sam_checkpoint, self.sam_kwargs)
        self._kept = LastBlockAttention(self.sam_model)
        self._predictor = SamPredictor(self.sam_model)

    whole_images_only = True    # its windows share one similarity mean and SAM's attention spans the image

    def forward(self, block, tokens, grid, linear, feats=None):
        raise ProxyCLIPError("Trident computes whole images (image_logits): its windows share one similarity mean and "
                             "are spliced before SAM's attention, so it has no per-crop forward.")

    # --- SAM's side ----------------------------------------------------------------------------------------
    def sam_image(self, source: ImageSource, patch: int) -> tuple[np.ndarray, tuple[int, int]]:
        """(the image SAM sees, uint8 RGB [H', W', 3]; the (H, W) it was read at): the file read by OpenCV (BGR ->
        RGB), or, without a file (the library's `segment`), the given image as it is; resized (cv2.resize,
        bilinear) up to multiples of CLIP's patch (trident.py:135-140)."""
        if source.path is not None:
            image = cv2.imread(str(source.path))
            if image is None:
                raise ProxyCLIPError(f"Trident's SAM reads the image file with OpenCV, which cannot read {source.path}.")
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        else:
            pixels = source.image if source.image.dtype == torch.uint8 else (source.image.float() * 255).round()
            image = np.ascontiguousarray(pixels.to(torch.uint8).permute(1, 2, 0).cpu().numpy())
        h, w = image.shape[:2]
        return cv2.resize(image, (-(-w // patch) * patch, -(-h // patch) * patch)), (h, w)

    def sam_parts(self, image: np.ndarray) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(attention [1, heads, n, n], values [1, heads, h, w, d]) of the image, or of each half (split_halves)."""
        if not self.split_halves:
            return [sam_guidance(self._predictor, self._kept, image)]
        w = image.shape[1]
        return [sam_guidance(self._predictor, self._kept, np.ascontiguousarray(half))
                for half in (image[:, :w // 2], image[:, w // 2:])]

    # --- the whole image -----------------------------------------------------------------------------------
    @torch.no_grad()
    def image_logits(self, engine: Engine, source: ImageSource) -> WholeImageLogits:
        """[Q, H, W] at source.out_size (float32), and SAM's predictor state for `refine_labels` when
        `sam_refinement` (a batch's images all run before any is decided, so each keeps its own)."""
        geometry = engine.geometry
        if geometry.mode != "slide":
            raise ProxyCLIPError("Trident computes its windows itself (slide_crop, slide_stride); mode 'whole' has no "
                                 "meaning for it: use mode slide (its protocol files do) and crop_size / stride.")
        visual = engine.visual
        patch = visual.conv1.kernel_size[0]
        sam_input, read_size = self.sam_image(source, patch)
        parts = self.sam_parts(sam_input)
        state = None
        if self.sam_refinement:
            if self.split_halves:
                self._predictor.set_image(sam_input)
            p = self._predictor
            state = SamState(p.features, p.input_size, p.original_size, read_size)
        x = upsized(engine.clip_normalised(source.image)[None], patch, geometry.crop_size)   # [1, 3, H, W]
        image_grid = (x.shape[-2] // patch, x.shape[-1] // patch)
        # Unpadded: the original pads to a multiple of 56 (trident.py:217-221), which its 336 crops never need except
        # for an image with both sides multiples of the patch and one below the crop, whose padded windows it cannot
        # splice (a shape error); here those run at their own size. All windows in one batch: they share one mean.
        batches = list(engine.window_batches([x[0]]))
        if len(batches) != 1:
            raise ProxyCLIPError(f"Trident's windows must share one size; crop_size {geometry.crop_size} and stride "
                                 f"{geometry.stride} on a {tuple(x.shape[-2:])} image do not.")
        windows = batches[0]
        if any(windows.pads[0]):
            y1, y2, x1, x2 = windows.windows[0]
            raise ProxyCLIPError(
                f"Trident does not pad its windows: a {(y2 - y1, x2 - x1)} window is no multiple of pad_multiple "
                f"{geometry.pad_multiple}, and padded windows cannot be spliced (the original fails there too: a shape "
                f"error in its guidance_attn). Set --model.segmentor.pad_multiple 1 to run such images unpadded, or use "
                f"a crop_size that is a multiple of {geometry.pad_multiple} on images at least that large (the protocol "
                "files' 336 with 56).")
        boxes = [(y1 // patch, x1 // patch, y2 // patch, x2 // patch) for y1, y2, x1, x2 in windows.windows]
        crops = windows.crops.to(next(visual.parameters()).dtype)                                # [B, 3, c, c]
        feats = self.vfm_features(engine.vfm, crops, engine.statistics.for_vfm, geometry.crop_size)   # [B, C, h, w]
        lin = linear_for(engine.onednn)
        h, grid = embed_tokens(visual, crops)
        h = run_blocks(visual, h, onednn=engine.onednn).tokens[:, 1:]                            # CLS dropped
        out = dino_guided_attention(visual.transformer.resblocks[-1], h, grid, feats.to(h.dtype), self.beta, self.gamma, lin)
        canvas = splice_windows(out, grid, tuple(feats.shape[-2:]), boxes, image_grid)          # [W, h', w']
        middle = canvas.shape[-1] // 2            # Cityscapes: each half of the grid with its half's SAM
        pieces = (canvas[..., :middle], canvas[..., middle:]) if self.split_halves else (canvas,)
        mixed = []
        for piece, (attn, v) in zip(pieces, parts):
            weights = sam_similarity(v, attn, self.cos_fac, self.refine_neg_cos).to(piece.dtype)   # [n, n]
            mixed.append(guided(piece, weights, tuple(v.shape[2:4])).view(*v.shape[2:4], -1))     # [h, w, W]
        feats_out = torch.cat(mixed, dim=1)                                                     # halves side by side
        emb = F.normalize(project(visual, feats_out.flatten(0, 1), lin), dim=-1)               # [n, D]
        logits = (emb @ engine.text.to(emb.dtype).T).T.reshape(-1, *feats_out.shape[:2])
        logits = F.interpolate(logits[None], size=source.out_size, mode="bilinear", align_corners=False)[0].float()
        return WholeImageLogits(logits, state)

    def refine_labels(self, labels: torch.Tensor, probs: torch.Tensor, source: ImageSource) -> torch.Tensor:
        """The SAM refinement (seg_utils/utils.py:92-196, called at trident.py:277-281) when `sam_refinement`, with the
        image's own SAM state, released once used."""
        state = source.state
        if not self.sam_refinement or not isinstance(state, SamState):
            return labels
        source.state = None
        p = self._predictor
        p.features, p.input_size, p.original_size, p.is_image_set = state.features, state.input_size, \
            state.original_size, True
        return sam_refinement(labels, probs, p, state.read_size, self.coarse_thresh, self.minimal_area,
                              self.sam_mask_coff, self.sam_iou_thresh)


@dataclass(frozen=True)
class SamState(ImageState):
    """SAM's predictor state of one image (segment_anything's SamPredictor after `set_image`), for the refinement."""
    features: torch.Tensor               # [1, 256, 64, 64] the image encoder's embedding
    input_size: tuple[int, int]          # the resized image's (h, w) inside SAM's 1024 square
    original_size: tuple[int, int]       # the image SAM was given, (H', W') (multiples of CLIP's patch)
    read_size: tuple[int, int]           # the file's own (H, W), as read
