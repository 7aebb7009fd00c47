"""The training-free segmentor of every method (ProxyCLIP and the baselines): an `nn.Module` that needs neither
Lightning nor the CLI. `ProxyCLIPSegmentor` is its former name, kept as an alias."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import ProxyCLIPError
from ..vocabulary import parse_vocabulary
from .clip_encoder import build_clip, clip_patch_size
from .clip_tower import in_dtype_of as _in_dtype_of
from .engine import Engine, PixelStatistics, clip_normalised
from .last_block import Crops, ImageSource, build_last_block
from .method_options import method_kwargs_help, method_option_types, method_settings, methods_help, protocol_values
from .onednn_linear import linear_path, swap_linears
from .pamr import pamr
from .pixel_statistics import NUMERICS, STATISTICS_BUFFERS, Numerics, resolve_statistics, statistics_buffers
from .small_classes import suppress_small_classes
from .sliding_window import WindowBatch, WindowGeometry
from .text import encode_queries
from .text_cache import cached_encode_queries
from .vfm import build_vfm


class TrainingFreeSegmentor(nn.Module):
    """Training-free open-vocabulary segmentation by CLIP whose last block is the `method`'s, no trained weights:
    ProxyCLIP's (CLIP's values attended with a VFM's patch similarities, docs/method.md §1–§6) or another registered
    method's (`method` below lists them all; proxyclip/methods/<method>/README.md).

    Args:
        clip_model: open_clip model name (ViT-B-16, ViT-L-14, ViT-H-14, ...), a model-config JSON file, or the model
            config inline (embed_dim, vision_cfg, text_cfg).
        clip_pretrained: open_clip pretrained tag (openai, laion2b_s32b_b79k, ...), a local checkpoint file,
            or null for random weights.
        clip_quick_gelu: CLIP's MLP activation, which must be the one the weights were trained with: true for
            QuickGELU (OpenAI's weights), false for GELU (e.g. LAION's ViT-H-14), null to take it from the tag
            (required for a local checkpoint file, whose weights do not say).
        method: the training-free method: <methods>. ProxyCLIP: docs/method.md; the others: proxyclip/methods/<method>/README.md.
        method_kwargs: the method's own options, checked against the method before any model is built; unset ones
            are its defaults. The CLI merges them key by key: the command line's over the method's protocol file's,
            over the preset's. <method options>. On the command line: --model.segmentor.method_kwargs '{beta: 1.0,
            gamma: 3.0}'.
        vfm: registered VFM name (`proxyclip.method.vfm.list_vfms()`), e.g. dino_vitb8, dinov2_vitb14_reg, sam_vit_b,
            mae_vit_base; null: the method's default (its last block's `default_vfm`: dino_vitb8 for proxyclip).
            Refused for methods without a VFM.
        vfm_pretrained: true for the library's pretrained weights, false for random, or a local checkpoint file
            (null: true). Refused for methods without a VFM.
        vfm_kwargs: extra arguments for the VFM factory (e.g. depth, embed_dim, img_size). Refused for methods without
            a VFM.
        logit_scale: temperature of the softmax over queries.
        prob_thd: pixels whose best class probability is below this become class 0 (background). null: set from the
            data config in the CLI; outside it 0.0.
        area_thd: SCLIP's area threshold: classes other than 0 that win at most this share of the non-background
            pixels are removed before the decision (null: none).
        pamr_steps: PAMR refinement steps of the logits at the image's size, guided by the image (0: none).
        pamr_dilations: PAMR's neighbourhood dilations.
        crop_size: sliding-window crop side in pixels. null: set from the data config in the CLI; outside it 336.
        stride: sliding-window stride in pixels. null: set from the data config in the CLI; outside it 112.
        mode: "slide" (sliding windows, the paper's protocol) or "whole" (the whole image at once).
        pad_multiple: each crop is zero-padded (in CLIP-normalised space) to a multiple of this.
        crop_batch_size: crops run through the encoders together; bounds memory, never changes results.
        class_names: the vocabulary, one class per entry, synonyms separated by "; " (can be set later). null: set
            from the data config in the CLI.
        text_cache: read/write query embeddings in a disk cache keyed by CLIP model, weights, queries and templates.
        text_cache_dir: the cache folder (default: $PROXYCLIP_CACHE_DIR/text, else ~/.cache/proxyclip/text).
        compile: torch.compile the VFM and CLIP's blocks (first calls per crop shape compile; same results).
        channels_last: channels-last memory format for the patch convolutions and the crops (same results).
        onednn_linear: fp32 linear layers on CPU through oneDNN (true) or PyTorch's own MKL path (false); "auto":
            whichever is faster on this CPU, decided from its vendor and features (onednn_linear.py: oneDNN on
            AVX-512 CPUs that are not Intel's; $PROXYCLIP_ONEDNN_LINEAR=true|false sets what "auto" takes on any
            CPU). Same results up to rounding. No effect on GPUs or under autocast.
        clip_mean: CLIP's pixel mean, RGB in [0, 1] units; null: the weights' own (open_clip's pretrained config of
            the tag; OpenAI's for random weights). A value must agree with the tag's; a local checkpoint needs it.
        clip_std: CLIP's pixel standard deviation, RGB in [0, 1] units; null and rules as clip_mean.
        vfm_mean: the VFM's pixel mean, RGB in [0, 1] units; null: its weights' own (timm's pretrained config, SAM's
            pixel_mean / 255). A value must agree with the library's weights; with others it is applied.
        vfm_std: the VFM's pixel standard deviation, RGB in [0, 1] units; null and rules as vfm_mean.
        numerics: "original" computes every input as the method's original harness does (mmseg's rounded
            constants on 0-255 values; an emptied proxy-attention row gives NaN and class 0, counted), the
            benchmarks' protocol; "defined" normalises x / 255 with the statistics themselves and leaves a row
            that masking would empty unmasked (docs/method.md §1-§3). Null: "defined" (the benchmark data sets
            "original" through the CLI).
    """

    def __init__(
        self,
        clip_model: dict[str, Any] | str = "ViT-B-16",
        clip_pretrained: str | None = "openai",
        clip_quick_gelu: bool | None = None,
        method: str = "proxyclip",
        method_kwargs: dict[str, Any] | None = None,
        vfm: str | None = None,
        vfm_pretrained: bool | str | None = None,
        vfm_kwargs: dict[str, Any] | None = None,
        logit_scale: float = 40.0,
        prob_thd: float | None = None,
        area_thd: float | None = None,
        pamr_steps: int = 0,
        pamr_dilations: tuple[int, ...] = (8, 16),
        crop_size: int | None = None,
        stride: int | None = None,
        mode: Literal["slide", "whole"] = "slide",
        pad_multiple: int = 56,
        crop_batch_size: int = 16,
        class_names: list[str] | None = None,
        text_cache: bool = True,
        text_cache_dir: str | None = None,
        compile: bool = False,
        channels_last: bool = False,
        onednn_linear: bool | Literal["auto"] = "auto",
        clip_mean: tuple[float, float, float] | None = None,
        clip_std: tuple[float, float, float] | None = None,
        vfm_mean: tuple[float, float, float] | None = None,
        vfm_std: tuple[float, float, float] | None = None,
        numerics: Numerics | None = None,
    ) -> None:
        super().__init__()
        # another method's options refused, unset ones the method's or the library's defaults (method_options.py)
        method_options, vfm, vfm_pretrained = method_settings(method, method_kwargs, vfm=vfm, vfm_pretrained=vfm_pretrained,
                                                              vfm_kwargs=vfm_kwargs, vfm_mean=vfm_mean, vfm_std=vfm_std)
        prob_thd, crop_size, stride = protocol_values(prob_thd, crop_size, stride)
        statistics = resolve_statistics(clip_model, clip_pretrained, clip_mean, clip_std, vfm, vfm_pretrained,
                                        vfm_mean, vfm_std)   # docs/method.md §1; before any model is built
        parsed = None if class_names is None else parse_vocabulary(class_names)   # refused before any model is built
        linear_path(onednn_linear)                                                 # likewise
        self.clip, self.tokenizer = build_clip(clip_model, clip_pretrained, clip_quick_gelu)
        self.method, self.last_block = method, build_last_block(method, **method_options)
        self.vfm = build_vfm(vfm, vfm_pretrained, vfm_kwargs) if self.last_block.needs_vfm else None
        self.last_block.check_encoders(self.clip.visual, self.vfm)
        self.clip_model_name, self.clip_pretrained = clip_model, clip_pretrained   # the text cache's key
        self.text_cache, self.text_cache_dir = text_cache, text_cache_dir
        self.channels_last, self.compiled = channels_last, compile   # not `self.compile`: nn.Module has that method
        self.use_onednn_linear(onednn_linear)   # before compiling, so that compile traces the swapped modules
        for encoder in (self.vfm, self.clip.visual):
            if encoder is not None and channels_last:   # only 4-D weights (the patch convolutions) change layout
                encoder.to(memory_format=torch.channels_last)
        if compile:         # in place (nn.Module.compile): state_dict keys and weights stay as they are
            if self.vfm is not None:
                self.vfm.compile()
            for block in self.clip.visual.transformer.resblocks[:-1]:  # the last block is the method's
                block.compile()
        self.logit_scale, self.prob_thd, self.area_thd = logit_scale, prob_thd, area_thd
        self.pamr_steps, self.pamr_dilations = pamr_steps, tuple(pamr_dilations)
        self.crop_size, self.stride, self.mode, self.pad_multiple = crop_size, stride, mode, pad_multiple
        self.crop_batch_size = crop_batch_size
        self.check_geometry()
        for name, value in statistics_buffers(statistics).items():   # docs/method.md §1; float32 always (_apply)
            self.register_buffer(name, value, persistent=False)
        self.pixel_statistics: dict[str, tuple[float, float, float]] = statistics   # what runs, for the records
        self.numerics = numerics or "defined"
        self.register_buffer("query_embeddings", torch.empty(0), persistent=False)   # [Q, D], computed lazily
        self.register_buffer("query_to_class", torch.empty(0, dtype=torch.long), persistent=False)  # [Q]
        self.class_names: list[str] = []
        self.queries: list[str] = []
        if parsed is not None:
            self._use_vocabulary(class_names, *parsed)

    @property
    def method_options(self) -> dict[str, Any]:
        """The method's own options as they run, defaults filled in (e.g. proxyclip: {"beta": 1.2, "gamma": 3.0}),
        read from its last block, which keeps them (method_options.py)."""
        return {name: getattr(self.last_block, name) for name in method_option_types(self.method)}

    @property
    def numerics(self) -> str:
        """"original" (the benchmark protocol, as each original computes) or "defined" (docs/method.md §1-§3)."""
        return self._numerics

    @numerics.setter
    def numerics(self, value: str) -> None:
        if value not in NUMERICS:
            raise ProxyCLIPError(f"numerics must be one of {', '.join(NUMERICS)} (or null: defined), got {value!r}.")
        self._numerics = value
        self.last_block.use_numerics(value)

    @property
    def nan_possible(self) -> bool:
        """Whether a pixel's logits can be NaN (ProxyCLIP's proxy attention under numerics "original", §3.4)."""
        return self.last_block.nan_possible(self.numerics)

    def check_geometry(self) -> None:
        patch = max(*clip_patch_size(self.clip.visual), self.vfm.min_crop_side() if self.vfm is not None else 1)
        if self.mode not in ("slide", "whole"):
            raise ProxyCLIPError(f"mode must be 'slide' or 'whole', got {self.mode!r}.")
        if self.crop_size < patch or self.stride < 1 or self.stride > self.crop_size or self.pad_multiple < 1:
            raise ProxyCLIPError(
                f"crop_size={self.crop_size}, stride={self.stride}, pad_multiple={self.pad_multiple} cannot be served: the crop must "
                f"hold at least one {patch}-pixel patch of CLIP and the VFM, and 1 <= stride <= crop_size (else pixels are left "
                "uncovered). The paper uses crop_size 336, stride 112 (Cityscapes 224/112)."
            )

    def use_onednn_linear(self, enabled: bool | Literal["auto"] = True) -> "TrainingFreeSegmentor":
        """Switch the encoders' fp32 CPU linears to oneDNN or back to PyTorch's own (same parameters and keys);
        "auto": this CPU's faster one (`onednn_choice`). `fp32_linear` records which and why."""
        setting, (enabled, why) = enabled, linear_path(enabled)
        self.onednn_linear = enabled
        self.fp32_linear = {"set": setting, "kernel": "oneDNN" if enabled else "PyTorch's own", "why": why}
        for encoder in (self.vfm, self.clip):
            if encoder is not None:
                swap_linears(encoder, onednn=enabled)
        return self

    def _apply(self, fn: Any, recurse: bool = True) -> "TrainingFreeSegmentor":
        """Moves and casts as nn.Module does, but the pixel statistics stay float32: a `.half()` model normalises in
        float32 and casts the result, as the originals' fp16 runs do (ProxyCLIP proxyclip_segmentor.py:116, :177)."""
        kept = {name: self._buffers[name] for name in STATISTICS_BUFFERS if name in self._buffers}
        super()._apply(fn, recurse)
        for name, before in kept.items():
            after = self._buffers[name]
            self._buffers[name] = after if after.dtype == before.dtype else before.to(after.device)
        return self

    # --- vocabulary -----------------------------------------------------------------------------
    def set_vocabulary(self, class_names: Sequence[str]) -> None:
        """Set the classes (one entry per class, synonyms separated by "; "); text is encoded on first use."""
        self._use_vocabulary(class_names, *parse_vocabulary(class_names))

    def _use_vocabulary(self, class_names: Sequence[str], queries: list[str], query_to_class: list[int]) -> None:
        """`class_names` as `parse_vocabulary` parsed them: its queries and the class of each."""
        self.queries, self.class_names = queries, [str(name).strip() for name in class_names]
        self.query_to_class = torch.tensor(query_to_class, device=self.clip_mean.device)
        self.query_embeddings = torch.empty(0, device=self.clip_mean.device)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def text_embeddings(self) -> torch.Tensor:
        """[Q, D] query embeddings, computed once per vocabulary (in fp32, outside any autocast), via the disk cache."""
        if not self.queries:
            raise ProxyCLIPError("No vocabulary is set: pass class_names=[...] or call set_vocabulary([...]) first.")
        if self.query_embeddings.numel() == 0:
            with torch.autocast(self.clip_mean.device.type, enabled=False):
                if self.text_cache:   # a second run with the same model and vocabulary encodes no prompt
                    self.query_embeddings = cached_encode_queries(self.clip, self.tokenizer, self.queries, self.clip_model_name,
                                                                  self.clip_pretrained, self.text_cache_dir)
                else:
                    self.query_embeddings = encode_queries(self.clip, self.tokenizer, self.queries)
        return self.query_embeddings

    # --- what a method reads -------------------------------------------------------------------
    def engine(self) -> Engine:
        """The segmentor as a method sees it now (engine.py): encoders, text, geometry, statistics, linear path."""
        geometry = WindowGeometry(self.mode, self.crop_size, self.stride, self.pad_multiple)
        return Engine(self.method, self.clip.visual, self.vfm, self.text_embeddings(), geometry,
                      self.pixel_statistics_now(), self.onednn_linear)

    def pixel_statistics_now(self) -> PixelStatistics:
        """The statistics buffers (on the model's device, float32) under the current numerics; a method without a VFM
        has no VFM statistics."""
        vfm_mean, vfm_std = (getattr(self, name, None) for name in ("vfm_mean", "vfm_std"))
        return PixelStatistics(self.clip_mean, self.clip_std, self.clip_mean_255, self.clip_std_255, vfm_mean, vfm_std,
                               self.numerics)

    def clip_normalised(self, image: torch.Tensor) -> torch.Tensor:
        """[3, h, w] RGB, uint8 or float in [0, 1] -> CLIP's float input [3, h, w], as the model sees it (§1)."""
        return clip_normalised(image, self.pixel_statistics_now())

    # --- dense features and per-crop logits -------------------------------------------------------
    def _crops(self, x: torch.Tensor, text: torch.Tensor | None, images: list[torch.Tensor] | None = None) -> Crops:
        """x: [B, 3, H, W] CLIP-normalised (already padded) -> the crops as the method sees them. Each encoder gets its
        input in its weights' dtype (fp16 for a `.half()` model, cast after the float32 normalisation). images: per
        crop, the CLIP-normalised image it was cut from."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats = None
        if self.vfm is not None:     # the method's VFM input and output (by default ProxyCLIP's; padding -> CLIP's mean colour)
            statistics = (self.clip_mean, self.clip_std, self.vfm_mean, self.vfm_std)
            feats = self.last_block.vfm_features(self.vfm, x, statistics, self.crop_size)
        return Crops(self.clip.visual, _in_dtype_of(self.clip.visual, x), text, self.logit_scale, feats, self.onednn_linear,
                     images)

    def _refuse_whole_image_method(self, call: str) -> None:
        if self.last_block.whole_images_only:
            raise ProxyCLIPError(
                f"The {self.method} method computes whole images only (its image_logits: no crop has features of its own "
                f"there), so {call} cannot serve it. Call the segmentor on whole images instead: segmentor(images, "
                "out_sizes, paths) for logits, predict_batch / segment / predict_probabilities for probabilities and labels.")

    def dense_features(self, crops: torch.Tensor) -> torch.Tensor:
        """crops: [B, 3, H, W] RGB in [0, 1] -> L2-normalised dense CLIP embeddings [B, D, h, w] (the method's grid).
        Methods whose features depend on the text (ResCLIP) need the vocabulary set; methods that compute only whole
        images (Trident, CorrCLIP) are refused."""
        self._refuse_whole_image_method("dense_features")
        x = self.pixel_statistics_now().clip_input(crops)
        with _exact_fp32_convolutions(x):
            return self.last_block.dense(self._crops(x, self.text_embeddings() if self.queries else None))

    def crop_logits(self, x: torch.Tensor, images: list[torch.Tensor] | None = None) -> torch.Tensor:
        """x: [B, 3, H, W] CLIP-normalised -> the method's logits [B, Q, H, W] (cosine with the text, bilinear from
        the feature grid, for every method so far). images: per crop, the CLIP-normalised image [3, h, w] it was cut
        from (CASS reads the whole image). Methods that compute only whole images (Trident, CorrCLIP) are refused."""
        self._refuse_whole_image_method("crop_logits")
        with _exact_fp32_convolutions(x):
            return self.last_block.crop_logits(self._crops(x, self.text_embeddings(), images))

    # --- whole images -----------------------------------------------------------------------------
    def forward(self, images: Sequence[torch.Tensor], out_sizes: Sequence[tuple[int, int]] | None = None,
                paths: Sequence[str | None] | None = None) -> list[torch.Tensor]:
        """Query logits per image.

        images: per image [3, h, w] RGB, uint8 or float in [0, 1]; sizes may differ.
        out_sizes: per image the (H, W) of its ground truth (default: its own size).
        paths: per image the file it was read from (Trident and CorrCLIP read it; default: none).
        Returns per image [Q, H, W]: window logits summed, divided by the window count, resized bilinearly
        (or the method's own `image_logits`). Every crop is computed on its own, so an image's result does not
        depend on its batch.
        """
        return self.image_logits(self.sources(images, out_sizes, paths))

    def sources(self, images: Sequence[torch.Tensor], out_sizes: Sequence[tuple[int, int]] | None = None,
                paths: Sequence[str | None] | None = None) -> list[ImageSource]:
        """The images of a batch as a method sees them whole (last_block/base.py `ImageSource`)."""
        out_sizes = out_sizes or [tuple(image.shape[-2:]) for image in images]
        paths = paths or [None] * len(images)
        return [ImageSource(image, tuple(size), path) for image, size, path in zip(images, out_sizes, paths)]

    def image_logits(self, sources: Sequence[ImageSource]) -> list[torch.Tensor]:
        """Per source the query logits [Q, H, W] at its out_size (see `forward`); a method's own whole-image result
        leaves its state in the source (`ImageSource.state`, for `decide`)."""
        engine = self.engine()
        results: list[torch.Tensor | None] = []
        with _exact_fp32_convolutions(self.clip_mean):    # a method's own whole-image forward (Trident, CorrCLIP)
            for source in sources:
                whole = self.last_block.image_logits(engine, source)
                source.state = None if whole is None else whole.state
                results.append(None if whole is None else whole.logits)
        shared = [index for index, result in enumerate(results) if result is None]
        normalised = [engine.clip_normalised(sources[index].image) for index in shared]       # [3, h, w] each

        def logits_of(batch: WindowBatch) -> torch.Tensor:   # [n, 3, Hp, Wp] -> [n, Q, Hp, Wp]
            return self.crop_logits(batch.crops, [normalised[image] for image in batch.images])

        averaged = engine.averaged_window_logits(normalised, logits_of, self.crop_batch_size)
        for index, canvas in zip(shared, averaged):
            results[index] = F.interpolate(canvas[None], size=sources[index].out_size, mode="bilinear",
                                           align_corners=False)[0]
        return results

    def class_probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """[Q, H, W] query logits -> [C, H, W]: softmax(logit_scale * logits) over queries, max over a class's queries."""
        probs = (logits.float() * self.logit_scale).softmax(dim=0)
        if probs.shape[0] == self.num_classes:
            return probs
        index = self.query_to_class.view(-1, 1, 1).expand_as(probs)
        return probs.new_zeros(self.num_classes, *probs.shape[1:]).scatter_reduce_(0, index, probs, "amax")

    def refine(self, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """PAMR (when `pamr_steps`): [Q, H, W] logits at the image's original size, guided by the CLIP-normalised
        image [3, h, w] (as the model saw it) resized bilinearly to that size; otherwise the logits unchanged."""
        if not self.pamr_steps:
            return logits
        guide = F.interpolate(self.clip_normalised(image)[None], size=logits.shape[-2:], mode="bilinear", align_corners=False)
        return pamr(guide, logits[None], self.pamr_steps, self.pamr_dilations)[0]

    def decide(self, probs: torch.Tensor, source: ImageSource | None = None) -> torch.Tensor:
        """[C, H, W] class probabilities -> [H, W] int64 labels: classes too small for `area_thd` removed (when set),
        the most probable class, and class 0 where its probability is below `prob_thd`; then the method's own last
        step on the labels (`refine_labels`: CorrCLIP's vote, Trident's SAM refinement) when the image is given."""
        if self.area_thd is not None:
            probs = suppress_small_classes(probs, self.area_thd)
        best, pred = probs.max(dim=0)
        pred = pred.masked_fill_(best < self.prob_thd, 0)      # masked_fill: no host sync (boolean indexing would)
        return pred if source is None else self.last_block.refine_labels(pred, probs, source)

    def probabilities(self, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """[Q, H, W] logits of `image` -> [C, H, W] class probabilities, after the method's refinement."""
        return self.class_probabilities(self.refine(logits, image))

    @torch.no_grad()
    def predict_batch(self, images: Sequence[torch.Tensor], out_sizes: Sequence[tuple[int, int]] | None = None,
                      paths: Sequence[str | None] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image of a batch (see `forward`): its class probabilities [C, H, W] and label map [H, W] int64."""
        sources = self.sources(images, out_sizes, paths)
        out = []
        for logits, source in zip(self.image_logits(sources), sources):
            probs = self.probabilities(logits, source.image)
            out.append((probs, self.decide(probs, source)))
        return out

    @torch.no_grad()
    def labels_and_nan_masks(self, images: Sequence[torch.Tensor], out_sizes: Sequence[tuple[int, int]] | None = None,
                             paths: Sequence[str | None] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image of a batch (see `forward`): the label map [H, W] int64 and the bool mask [H, W] of the pixels
        whose logits were NaN (decided class 0, docs/method.md §3.4). The path `test` runs; no host-device sync
        (benchmarks/device_check.py checks it on a GPU)."""
        # a NaN logit makes every class NaN: one class's [H, W] says it
        return [(labels, probs[0].isnan()) for probs, labels in self.predict_batch(images, out_sizes, paths)]

    def segment_batch(self, images: Sequence[torch.Tensor], out_sizes: Sequence[tuple[int, int]] | None = None,
                      paths: Sequence[str | None] | None = None) -> list[torch.Tensor]:
        """Label maps [H, W] for a batch (see `forward`)."""
        return [labels for labels, _ in self.labels_and_nan_masks(images, out_sizes, paths)]

    # --- library use on single images -------------------------------------------------------------
    @torch.no_grad()
    def predict_probabilities(self, image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Class probabilities [C, H, W] for one RGB image (PIL, uint8 array [H, W, 3] or tensor [3, H, W]) at its own size."""
        return self.predict_batch([self._image_tensor(image)])[0][0]

    @torch.no_grad()
    def segment(self, image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Label map [H, W] (int64 class indices) for one RGB image at its own size."""
        return self.predict_batch([self._image_tensor(image)])[0][1]

    def _image_tensor(self, image: Any) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            return image.to(self.clip_mean.device)
        try:
            if isinstance(image, np.ndarray):
                image = Image.fromarray(image)
            array = np.asarray(image.convert("RGB"))
        except Exception as exc:
            raise ProxyCLIPError(
                f"Cannot read the input as an RGB image (got {type(image).__name__}"
                f"{' of shape ' + str(getattr(image, 'shape', '')) if hasattr(image, 'shape') else ''}). "
                "Pass a PIL image or a uint8 array [H, W, 3] (grayscale [H, W] and RGBA are converted)."
            ) from exc
        return torch.from_numpy(array.copy()).permute(2, 0, 1).to(self.clip_mean.device)


# The help of `method` and `method_kwargs` (LightningCLI reads the docstring) from the registered methods themselves.
TrainingFreeSegmentor.__doc__ = TrainingFreeSegmentor.__doc__.replace("<methods>", methods_help()).replace(
    "<method options>", method_kwargs_help())

#: the former name, which configs and code written before the rename still use
ProxyCLIPSegmentor = TrainingFreeSegmentor


@contextlib.contextmanager
def _exact_fp32_convolutions(x: torch.Tensor) -> Iterator[None]:
    """fp32 on a GPU is the exact reference: cuDNN would run the patch convolutions in TF32 (its default),
    10-bit mantissas, off from the CPU by ~1e-3. Under autocast, or on other devices, nothing changes."""
    if x.device.type != "cuda" or torch.is_autocast_enabled("cuda") or x.dtype != torch.float32:
        yield
        return
    saved, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved
