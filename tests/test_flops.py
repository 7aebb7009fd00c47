"""benchmarks/flops.py: FLOPs counted as a hand formula says, the kernels the counter cannot see routed around, MFU."""
import sys

import torch
from torch import nn

from conftest import REPO_ROOT, twin

sys.path.insert(0, str(REPO_ROOT))
from benchmarks import flops  # noqa: E402


class Block(nn.Module):
    """A pre-norm transformer block on [B, N, D] through nn.MultiheadAttention, whose fast path the counter cannot see."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


def test_a_transformer_block_counts_as_the_hand_formula():
    """Per token 12 D^2 multiply-adds in the linears (qkv 3, out 1, MLP 8), per image 2 N^2 D in QK^T and AV: 2 FLOPs
    each. Without routing around the MHA fast path and the CPU's flash SDPA, the attention would count 0."""
    batch, tokens, width = 3, 50, 64
    block = Block(width, heads=4).eval()
    counted = flops.count_flops(lambda: block(torch.randn(batch, tokens, width)), block)
    by_hand = 2 * batch * (tokens * 12 * width * width + 2 * tokens * tokens * width)
    assert counted == by_hand
    assert torch.backends.mha.get_fastpath_enabled()                       # restored


def test_onednn_linears_are_counted_and_restored(tiny_segmentor):
    """oneDNN's fp32 linears have no formula in the counter: a segmentor using them counts as one that does not."""
    images = [torch.randint(0, 256, (3, 112, 150), dtype=torch.uint8)]
    with_onednn, without = twin(tiny_segmentor, onednn_linear=True), twin(tiny_segmentor, onednn_linear=False)
    counted = flops.flops_per_image(with_onednn, images)
    assert counted > 0 and counted == flops.flops_per_image(without, images)
    assert with_onednn.onednn_linear and not without.onednn_linear       # each left as it was
    chosen = twin(tiny_segmentor, onednn_linear="auto")
    flops.flops_per_image(chosen, images)
    assert chosen.fp32_linear["set"] == "auto"                           # as set, not as resolved


def test_mfu_against_each_cards_dense_peak():
    assert flops.mfu(100.0, 1e12, "NVIDIA H100 80GB HBM3", torch.bfloat16) == 100 / 989.0
    assert flops.mfu(100.0, 1e12, "NVIDIA H200", "fp16") == 100 / 989.0
    assert flops.peak_tflops("NVIDIA H100 PCIe", torch.bfloat16) == ("H100 PCIe", 756.0)
    assert flops.peak_tflops("NVIDIA L40S", "bf16")[0] == "L40S" and flops.peak_tflops("NVIDIA L4", "bf16")[0] == "L4"
    assert flops.peak_tflops("NVIDIA A100-SXM4-80GB", "bf16") == ("A100", 312.0)
    assert flops.mfu(10.0, 1e12, "AMD EPYC 9B14 (family 25, model 17), 2 cores", "bf16") is None
    assert "no peak known" in flops.mfu_text(10.0, 1e12, "Some GPU", "bf16")
    assert flops.mfu_text(100.0, 1e12, "NVIDIA H200", "bf16").startswith("MFU 10.1 % of the H100 / H200 SXM's 989")
