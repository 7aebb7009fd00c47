"""A baseline that executes the way the original ProxyCLIP code does, on our own (identical) weights.

The original runs one crop at a time (batch 1), computes the VFM's attention explicitly as
softmax(Q Kᵀ) V, runs CLIP's blocks sequence-first through `nn.MultiheadAttention` (so PyTorch's
batch-first fast path never fires), and uses PyTorch's own linear layers (MKL on CPU); on GPU the model is
fp16, fed the float32-normalised input cast to fp16 (docs/method.md §9). `make_original_like` builds that
execution on a deep copy of a `TrainingFreeSegmentor`: same architecture, same weights, so it must compute the
same numbers in fp32 (tests/test_speed.py proves it), only more slowly.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from proxyclip.method.segmentor import TrainingFreeSegmentor  # noqa: E402


def make_original_like(seg: TrainingFreeSegmentor, half: bool = False) -> TrainingFreeSegmentor:
    """A copy of `seg` that runs like the original: batch 1, explicit attention, sequence-first MHA.

    half: fp16 weights, the input normalised in float32 (mmseg's float32 constants) and cast to fp16 for the
        encoders, fp16 logits, and `torch.cuda.empty_cache()` after each crop, as the original's GPU runs
        (proxyclip_segmentor.py:38, :74, :116, :177, :221); meant for CUDA, runs on a CPU too.
    The text embeddings are computed (once) before copying, so the copy never encodes text.
    """
    if getattr(seg, "compiled", False):
        raise ValueError("make_original_like needs an uncompiled segmentor (compile=False): compiled modules do not deep-copy")
    seg.text_embeddings()
    base = copy.deepcopy(seg)
    base.crop_batch_size = 1                                    # one crop per forward, as mmseg's slide loop
    base.use_onednn_linear(False)                               # PyTorch's own fp32 linears (MKL on CPU)
    for module in base.vfm.modules():
        if hasattr(module, "fused_attn"):                        # timm Attention: explicit softmax(q kᵀ) v
            module.fused_attn = False
    transformer = base.clip.visual.transformer
    transformer.batch_first = False                             # dense_clip_features transposes to [L, B, D]
    for module in transformer.modules():
        if isinstance(module, nn.MultiheadAttention):
            module.batch_first = False                          # fast path needs batch_first=True: off
    if half:
        base.half()                                             # the pixel statistics stay float32 (segmentor._apply)
        base.crop_logits = lambda x, images=None: _then_empty_cache(TrainingFreeSegmentor.crop_logits(base, x, images))
    return base.eval()


def _then_empty_cache(logits: torch.Tensor) -> torch.Tensor:
    """The original's slide loop calls `torch.cuda.empty_cache()` after every crop: the allocator starts over."""
    if logits.is_cuda:
        torch.cuda.empty_cache()
    return logits


def fused_attention_report(seg: nn.Module) -> dict[str, bool]:
    """Which attention paths a segmentor's modules take: timm fused (SDPA) and CLIP batch-first MHA."""
    timm_flags = [m.fused_attn for m in seg.vfm.modules() if hasattr(m, "fused_attn")]
    mha = [m for m in seg.clip.visual.transformer.modules() if isinstance(m, nn.MultiheadAttention)]
    return {
        "vfm_fused_attn": bool(timm_flags) and all(timm_flags),
        "clip_batch_first": bool(getattr(seg.clip.visual.transformer, "batch_first", True))
        and all(m.batch_first for m in mha),
    }
