"""Model FLOPs per image and model FLOP utilisation (MFU): how much of the card's dense matmul peak a run uses.

`flops_per_image(seg, images, sizes)` counts one `TrainingFreeSegmentor.segment_batch` call with
`torch.utils.flop_counter.FlopCounterMode` and divides by the images. What it counts: matrix products (mm, addmm,
bmm, baddbmm), convolutions and fused attention (SDPA's flash / efficient / cuDNN kernels), 2 FLOPs per
multiply-add. What it does not: elementwise work, norms, softmax outside SDPA, resizing, the decision; these are
memory-bound and small next to the encoders' products, so MFU here is "matmul FLOPs per second / matmul peak".
The text embeddings are computed before counting (once per vocabulary, not per image).

Three kernels the counter has no formula for are routed around while counting (and restored after):
- oneDNN's fp32 CPU linears (`torch.ops.mkldnn._linear_pointwise`, `onednn_linear=True`): switched to nn.Linear;
- nn.MultiheadAttention's fast path (`torch._native_multi_head_attention`, which open_clip's blocks take in fp32
  inference): switched off, so that its projections are linears and its attention SDPA;
- PyTorch's CPU flash attention (`_scaled_dot_product_flash_attention_for_cpu`): SDPA runs its math backend, whose
  products are bmm. On CUDA the flash / efficient / cuDNN kernels are counted as they are.
Without the second, the ViT-B-16 check below counts 22.5 GFLOPs instead of 35.1: the 12 blocks' attention is missed.
The FLOPs do not depend on the dtype, the crop batch or the images per call; they depend on the model, the crop
size, stride and the image size (the number of crops).

Checked by hand: open_clip ViT-B-16's image tower at 224 x 224 counts 35.1 GFLOPs per image (run:
`python benchmarks/flops.py`), i.e. 17.6 G multiply-adds: per block 12 N D^2 (qkv 3, out 1, MLP 8) + 2 N^2 D
(QK^T, AV) multiply-adds with N = 197 tokens, D = 768: 1.454 G, x 12 blocks = 17.45 G, + the patch embedding
196 x 768 x 768 = 0.116 G, + the projection 768 x 512. The "17.6 GFLOPs" quoted for ViT-B/16 (DeiT, timm) are
multiply-adds; MFU needs FLOPs (2 per multiply-add), which is what FlopCounterMode counts.
"""
from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Dense peak tensor throughput in TFLOP/s (no 2:4 sparsity), from NVIDIA's datasheets: H100 / H200 (SXM) and H100
# PCIe / NVL: "NVIDIA H100 Tensor Core GPU" datasheet and the H200 product page (sparse figures halved); A100: "NVIDIA
# A100 Tensor Core GPU" datasheet; L4 and L40S: their datasheets. "fp32" is the CUDA-core fp32 rate (no TF32);
# "tf32" the tensor-core rate fp32 matmuls get with torch.backends.cuda.matmul.allow_tf32.
# Matched in order on torch.cuda.get_device_name(), lower-cased: the first pattern found wins.
PEAK_TFLOPS = (
    (r"h100.*pcie", "H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.0}),
    (r"h100 nvl", "H100 NVL", {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    (r"h200|h100", "H100 / H200 SXM", {"bf16": 989.0, "fp16": 989.0, "tf32": 494.5, "fp32": 67.0}),
    (r"a100", "A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    (r"l40s", "L40S", {"bf16": 362.0, "fp16": 362.0, "tf32": 183.0, "fp32": 91.6}),
    (r"\bl4\b", "L4", {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3}),
)
DTYPE_KEYS = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def peak_tflops(device_name: str, dtype: torch.dtype | str) -> tuple[str, float] | None:
    """(the table's name of the card, its dense peak TFLOP/s for `dtype`), or None for a card not in the table.
    fp32 means TF32 tensor cores when PyTorch allows them for matmuls, as then its products run on them."""
    key = DTYPE_KEYS.get(dtype, dtype) if isinstance(dtype, torch.dtype) else dtype
    if key == "fp32" and torch.backends.cuda.matmul.allow_tf32:
        key = "tf32"
    for pattern, card, peaks in PEAK_TFLOPS:
        if re.search(pattern, device_name.lower()):
            return card, peaks[key]
    return None


def mfu(images_per_s: float, flops_per_image: float, device_name: str, dtype: torch.dtype | str) -> float | None:
    """Model FLOP utilisation, 0..1: achieved matmul FLOP/s over the card's dense peak; None for an unknown card
    (a CPU included: there is no table for CPUs, `achieved_tflops` still says what was reached)."""
    peak = peak_tflops(device_name, dtype)
    return None if peak is None else achieved_tflops(images_per_s, flops_per_image) / peak[1]


def achieved_tflops(images_per_s: float, flops_per_image: float) -> float:
    return images_per_s * flops_per_image / 1e12


def mfu_text(images_per_s: float, flops_per_image: float, device_name: str, dtype: torch.dtype | str) -> str:
    """"MFU 12.3 % of the H100 / H200 SXM's 989 bf16 TFLOP/s (121.7 TFLOP/s)", or what was reached on an unknown card."""
    reached = achieved_tflops(images_per_s, flops_per_image)
    peak = peak_tflops(device_name, dtype)
    if peak is None:
        return f"{reached * 1e3:.1f} GFLOP/s reached (MFU: no peak known for {device_name})"
    return f"MFU {100 * reached / peak[1]:.1f} % of the {peak[0]}'s {peak[1]:g} TFLOP/s ({reached:.1f} TFLOP/s)"


@contextlib.contextmanager
def countable(seg: torch.nn.Module):
    """The kernels the counter knows: nn.Linear instead of oneDNN's, no MHA fast path, SDPA's math backend on a
    CPU; restored after."""
    onednn = getattr(seg, "onednn_linear", False)
    setting = getattr(seg, "fp32_linear", {}).get("set", True)     # put back as set ("auto" stays "auto")
    if onednn:
        seg.use_onednn_linear(False)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    cpu = next(seg.parameters()).device.type == "cpu"
    try:
        with sdpa_kernel([SDPBackend.MATH]) if cpu else contextlib.nullcontext():
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        if onednn:
            seg.use_onednn_linear(setting)


def count_flops(fn, model: torch.nn.Module) -> int:
    """FLOPs FlopCounterMode counts while `fn()` runs `model` (under no_grad)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), countable(model), counter:
        fn()
    return counter.get_total_flops()


def flops_per_image(seg, images: list[torch.Tensor], sizes: list[tuple[int, int]] | None = None) -> float:
    """FLOPs of one segment_batch(images, sizes) call, per image; the text embeddings come first, uncounted."""
    with torch.no_grad():
        seg.text_embeddings()
    return count_flops(lambda: seg.segment_batch(images, sizes), seg) / len(images)


def main() -> None:
    """The hand check of the docstring: open_clip ViT-B-16's image tower at 224, random weights, on the CPU."""
    import open_clip

    model = open_clip.create_model("ViT-B-16", pretrained=None).visual.eval()
    flops = count_flops(lambda: model(torch.zeros(1, 3, 224, 224)), model)
    print(f"open_clip ViT-B-16 image tower, 224 x 224: {flops / 1e9:.2f} GFLOPs = {flops / 2e9:.2f} G multiply-adds")


if __name__ == "__main__":
    main()
