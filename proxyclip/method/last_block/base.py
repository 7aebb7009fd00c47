"""The interface of a training-free method: a dense-prediction replacement for CLIP's last residual block, and
what a method may change beyond it.

Training-free methods differ in how CLIP's last block turns the tokens into patch features: ProxyCLIP borrows
its attention from a VFM, SCLIP correlates queries with queries and keys with keys, ClearCLIP attends queries to
queries without the residual and the MLP, NACLIP adds a Gaussian neighbourhood to key-key similarity; ResCLIP,
SC-CLIP and CASS change it further from earlier blocks, the first pass's labels or the VFM's keys. Each is a
`LastBlock`, registered under its method's name in `LAST_BLOCKS` by the module that defines it
(`@LAST_BLOCKS.register("naclip")`); the rest of the dense forward (docs/method.md §3.1-3.2, §3.6) is shared.
A method that reads more of the tower (earlier blocks' outputs or attention, the text, the crop) overrides
`dense` or `crop_logits`, which receive the batch of crops as `Crops`. A method that computes whole images
(Trident, CorrCLIP) overrides `image_logits`, which receives the segmentor's frozen `Engine` (engine.py) and the
image (`ImageSource`), never the segmentor, and returns `WholeImageLogits`: the logits and its typed `ImageState`
for `refine_labels`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..clip_tower import Linear, dense_clip_features
from ..pixel_statistics import vfm_input
from ..registry import Registry
from .image_files import ImageFiles
from .method_weights import MethodWeights

if TYPE_CHECKING:       # the engine imports nothing of the methods; only the hook's annotation names it
    from ..engine import Engine


@dataclass
class Crops:
    """A batch of crops as a method sees them."""
    visual: nn.Module                    # CLIP's image tower (open_clip VisionTransformer), weights never changed
    pixels: torch.Tensor                 # [B, 3, H, W] CLIP-normalised (padded), in the tower's dtype
    text: torch.Tensor                   # [Q, D] unit query embeddings
    logit_scale: float                   # the segmentor's softmax temperature
    feats: torch.Tensor | None = None    # [B, C, h, w] the VFM's features, for methods that need a VFM
    onednn: bool = False                 # fp32 CPU projections through oneDNN (onednn_linear.py)
    # Per crop, the whole CLIP-normalised image [3, h, w] it was cut from (one tensor per image), when the segmentor
    # knows it: CASS's global vector. Per crop, not in the `Engine`: a batch holds crops of several images.
    images: list[torch.Tensor] | None = None


class ImageState:
    """What a method's `image_logits` computed of one image for its `refine_labels` (Trident's SAM features, CorrCLIP's
    region mask): each such method declares its own (frozen) dataclass deriving from this."""


@dataclass
class ImageSource:
    """One whole image as a method that works per image sees it (Trident re-reads the file for SAM; CorrCLIP finds
    its region masks by the file's stem). `state` is what `image_logits` returned for `refine_labels` (the
    segmentor keeps it here between the two; the method may release it)."""
    image: torch.Tensor                  # [3, h, w] as the batch gives it (uint8, or float in [0, 1]), resized by the protocol
    out_size: tuple[int, int]            # (H, W) the logits are wanted at (the ground truth's, or the image's own)
    path: str | None = None              # the image file, when the image came from one
    state: ImageState | None = None


@dataclass(frozen=True)
class WholeImageLogits:
    """What a method that computes whole images returns for one (`LastBlock.image_logits`)."""
    logits: torch.Tensor                 # [Q, H, W] at the source's out_size
    state: ImageState | None = None      # kept for `refine_labels` (None: nothing to keep)


class LastBlock(nn.Module):
    """CLIP's last residual block for dense prediction.

    forward(block, tokens, grid, linear, feats) -> (patch tokens [B, n, W] to go through `ln_post` and `proj`,
    their grid (gh', gw')). `block` is open_clip's `ResidualAttentionBlock` (its weights are used, never changed);
    `tokens` [B, 1 + gh*gw, W] are the batch-first tokens entering it, CLS first; `feats` are the VFM's features
    [B, C, h, w] when `needs_vfm`, else None.
    """

    listed_at: ClassVar[int] = 1000       # its place in lists of methods (the shipped ones 0..80; then by name)
    needs_vfm: ClassVar[bool] = False
    default_vfm: ClassVar[str | None] = None   # the VFM built when the `vfm` option is unset (methods with a VFM)
    title: ClassVar[str] = ""             # its display name in lists of methods ("SC-CLIP"); empty: its name
    summary: ClassVar[str] = ""           # what the method does, in a few words (the `method` option's help)
    # The common protocol (docs/protocols.md): the method_kwargs values that switch the method's own post-processing
    # off, and what it keeps because it cannot run without it, {option or step: why}.
    post_processing_off: ClassVar[dict[str, Any]] = {}
    common_exceptions: ClassVar[dict[str, str]] = {}
    # A method that computes only whole images (its `image_logits`; Trident, CorrCLIP) has no per-crop features:
    # the segmentor's dense_features / crop_logits refuse it, naming what to call instead.
    whole_images_only: ClassVar[bool] = False

    def forward(self, block: nn.Module, tokens: torch.Tensor, grid: tuple[int, int], linear: Linear,
                feats: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        raise NotImplementedError

    @classmethod
    def weights(cls, options: dict[str, Any]) -> list[MethodWeights]:
        """The checkpoints the method loads beyond CLIP's and the VFM's under its `options` (method_kwargs over its
        defaults), for `proxyclip-weights` and run.json's provenance (method_weights.py); none here."""
        return []

    @classmethod
    def image_files(cls, options: dict[str, Any]) -> ImageFiles | None:
        """The files the method reads one per image under its `options` (CorrCLIP's region masks), which the CLI checks
        before any model is built (image_files.py); None here."""
        return None

    @classmethod
    def named_weights(cls) -> list[MethodWeights]:
        """The checkpoints a user may ask `proxyclip-weights` for by name alone (`MethodWeights.name`); none here."""
        return []

    def use_numerics(self, numerics: str) -> None:
        """The segmentor's numerics ("original" or "defined", docs/method.md §1-§3), for a block whose arithmetic
        differs between them (ProxyCLIP's emptied attention rows); none here."""

    def nan_possible(self, numerics: str) -> bool:
        """Whether a pixel's logits can be NaN under `numerics` (then the metric counts such pixels); never here."""
        return False

    def check_encoders(self, visual: nn.Module, vfm: nn.Module | None) -> None:
        """Refuse, once both are built, a CLIP image tower or VFM the method cannot use (none here)."""

    def vfm_features(self, vfm: nn.Module, x: torch.Tensor, statistics: tuple[torch.Tensor, ...],
                     crop_size: int | None) -> torch.Tensor:
        """What the method reads of the VFM for the crops x [B, 3, H, W] (CLIP-normalised): by default ProxyCLIP's
        derivation of the VFM's input (`vfm_input`) and its features [B, C, h, w]. statistics: (clip_mean,
        clip_std, vfm_mean, vfm_std), [3, 1, 1] float32; crop_size: the segmentor's crop side."""
        pixels = vfm_input(x, *statistics)
        return vfm(pixels.to(next(vfm.parameters()).dtype), crop_size)

    def dense(self, crops: Crops) -> torch.Tensor:
        """L2-normalised dense embeddings [B, D, h, w]: CLIP's tower with this last block (clip_tower.py)."""
        return dense_clip_features(crops.visual, crops.pixels, self, crops.feats, onednn=crops.onednn)

    def crop_logits(self, crops: Crops) -> torch.Tensor:
        """Cosine logits [B, Q, H, W]: `dense` against the text, bilinear (align_corners=False) to the crop's size."""
        emb = self.dense(crops)
        logits = torch.einsum("bdhw,qd->bqhw", emb, crops.text.to(emb.dtype))
        return F.interpolate(logits, size=crops.pixels.shape[-2:], mode="bilinear", align_corners=False)

    def image_logits(self, engine: Engine, source: ImageSource) -> WholeImageLogits | None:
        """A method that computes an image's logits as a whole returns them, [Q, H, W] at `source.out_size`, with
        what its `refine_labels` needs of the image (Trident splices its windows before SAM's attention; CorrCLIP
        cuts its region masks with each window). It reads the segmentor only through `engine` (engine.py) and runs
        its windows through the engine's iterator. None (every method before them): the segmentor's shared
        sliding-window forward."""
        return None

    def refine_labels(self, labels: torch.Tensor, probs: torch.Tensor, source: ImageSource) -> torch.Tensor:
        """The method's last step on the decided labels [H, W] (int64) with the class probabilities [C, H, W] they
        came from (CorrCLIP's vote in each region mask, Trident's SAM refinement), `source.state` what `image_logits`
        returned for it (None when it did not run); by default none."""
        return labels


#: method name -> its last block, in registration order (the package imports ProxyCLIP's first).
LAST_BLOCKS: Registry[type[LastBlock]] = Registry("method", "method")
