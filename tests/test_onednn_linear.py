"""fp32 CPU linears through oneDNN compute what PyTorch's own do, and step aside where they must."""
import os

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from proxyclip.method.onednn_linear import (AUTO_ENV, OneDNNLinear, _AVAILABLE, choose_onednn, cpu_vendor_and_flags,
                                          forced_by_env, linear, onednn_applies, onednn_choice, swap_linears)
from proxyclip.method.vfm import build_vfm, list_vfms
from conftest import BORDER_IMAGES as IMAGES, needs_onednn, tiny_vfm_kwargs as tiny, twin


class LinearOps(TorchDispatchMode):
    """Counts aten linear/matmul kernels by backend."""

    def __init__(self):
        super().__init__()
        self.onednn = self.torch = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.onednn += name == "_linear_pointwise"
        self.torch += name in ("addmm", "mm", "linear")  # bmm: proxy attention, logits (no weights)
        return func(*args, **(kwargs or {}))


@needs_onednn
def test_linear_matches_torch_and_falls_back_where_it_must():
    x, weight, bias = torch.randn(2, 50, 64), torch.randn(96, 64), torch.randn(96)
    with torch.no_grad():
        assert onednn_applies(x, weight)
        with LinearOps() as ops:
            ours = linear(x.transpose(0, 1), weight, bias)           # non-contiguous input too
        assert ops.onednn == 1 and ops.torch == 0
        torch.testing.assert_close(ours, torch.nn.functional.linear(x.transpose(0, 1), weight, bias), atol=1e-5, rtol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):           # autocast owns the precision
            assert not onednn_applies(x, weight) and linear(x, weight, bias).dtype == torch.bfloat16
        assert not onednn_applies(x.double(), weight.double())
    x.requires_grad_(True)                                           # the oneDNN op has no backward
    assert not onednn_applies(x, weight)
    linear(x, weight, bias).sum().backward()
    assert x.grad is not None


def test_swap_linears_round_trip_keeps_parameters():
    model = nn.Sequential(nn.Linear(4, 8), nn.MultiheadAttention(8, 2, batch_first=True), nn.Linear(8, 2, bias=False))
    weights = [p.data_ptr() for p in model.parameters()]
    keys = list(model.state_dict())
    swap_linears(model)
    assert type(model[0]) is OneDNNLinear and type(model[1].out_proj) is OneDNNLinear and type(model[2]) is OneDNNLinear
    assert model[2].bias is None and [p.data_ptr() for p in model.parameters()] == weights and list(model.state_dict()) == keys
    swap_linears(model, onednn=False)
    assert not any(isinstance(m, OneDNNLinear) for m in model.modules())
    assert [p.data_ptr() for p in model.parameters()] == weights


@needs_onednn
def test_segmentor_with_onednn_linears_computes_the_same(tiny_segmentor):
    onednn, stock = twin(tiny_segmentor, onednn_linear=True), twin(tiny_segmentor, onednn_linear=False)
    assert onednn.onednn_linear and any(isinstance(m, OneDNNLinear) for m in onednn.vfm.modules())
    assert not any(isinstance(m, OneDNNLinear) for m in stock.modules())
    assert list(stock.state_dict()) == list(onednn.state_dict())
    with torch.no_grad():
        onednn.text_embeddings(), stock.text_embeddings()  # once per vocabulary; the image path is what counts
        with LinearOps() as ops:
            ours = onednn(IMAGES)
        assert ops.onednn > 0 and ops.torch == 0, "an fp32 CPU linear left oneDNN"
        with LinearOps() as ops:
            theirs = stock(IMAGES)
        assert ops.onednn == 0
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@needs_onednn
@pytest.mark.parametrize("name", list_vfms())
def test_every_registered_vfm_computes_the_same_on_onednn(name):
    """Every family's linears (timm's [B, N, C], SAM's windowed [B, H, W, C]) go to oneDNN with unchanged features."""
    torch.manual_seed(0)
    vfm = build_vfm(name, pretrained=False, model_kwargs=tiny(name))
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        reference = vfm(x)
        swap_linears(vfm)
        with LinearOps() as ops:
            ours = vfm(x)
    assert ops.onednn > 0 and ops.torch == 0
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("vendor, flags, onednn", [
    ("AuthenticAMD", {"avx2", "avx512f", "avx512_bf16"}, True),   # Zen 4 / Zen 5: MKL keeps to AVX2
    ("GenuineIntel", {"avx2", "avx512f", "amx_bf16"}, False),     # Xeon: MKL's own AVX-512 kernels were faster
    ("AuthenticAMD", {"avx2", "fma"}, False),                     # AVX2 only (Zen 3): MKL as fast or faster
    ("GenuineIntel", {"avx2"}, False),
])
def test_the_fp32_linear_path_follows_the_cpu(vendor, flags, onednn):
    chosen, why = choose_onednn(True, vendor, frozenset(flags))
    assert chosen is onednn and why.startswith("oneDNN" if onednn else "PyTorch's own")
    assert choose_onednn(False, vendor, frozenset(flags))[0] is False      # never where the op is missing


def test_auto_takes_this_cpus_path_and_records_why():
    from proxyclip import build_segmentor
    from conftest import TINY_CONFIG, VOCAB

    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB)                  # onednn_linear defaults to "auto"
    onednn, why = onednn_choice()
    forced = forced_by_env(os.environ.get(AUTO_ENV))                       # the tests' switch (conftest.py), if set
    assert choose_onednn(_AVAILABLE, *cpu_vendor_and_flags(), forced=forced) == (onednn, why)
    assert seg.onednn_linear is onednn and any(isinstance(m, OneDNNLinear) for m in seg.vfm.modules()) is onednn
    assert seg.fp32_linear == {"set": "auto", "kernel": "oneDNN" if onednn else "PyTorch's own", "why": why}
    seg.use_onednn_linear(not onednn)                                      # a user's setting wins, and says so
    assert seg.fp32_linear["set"] is (not onednn) and seg.fp32_linear["why"] == "set by the user"
    assert any(isinstance(m, OneDNNLinear) for m in seg.vfm.modules()) is (not onednn)


def test_the_environment_sets_what_auto_takes(monkeypatch):
    """PROXYCLIP_ONEDNN_LINEAR=true|false: "auto" takes that path on any CPU, and says why; oneDNN only where its op
    exists; an explicit setting still wins; any other value is refused before a model is built."""
    from proxyclip import TrainingFreeSegmentor, build_segmentor
    from conftest import TINY_CONFIG, VOCAB

    for value in ("true", "false"):
        for vendor, flags in (("AuthenticAMD", {"avx2", "avx512f"}), ("GenuineIntel", {"avx2", "avx512f"}), ("", set())):
            chosen, why = choose_onednn(True, vendor, frozenset(flags), forced=forced_by_env(value))
            assert chosen is (value == "true") and why.endswith(f"{AUTO_ENV}={value} sets what \"auto\" takes")
        assert choose_onednn(False, "AuthenticAMD", frozenset({"avx512f"}), forced=forced_by_env(value))[0] is False
    assert forced_by_env(None) is None and forced_by_env("") is None
    other = "false" if onednn_choice()[0] else "true"                     # the path this run's "auto" does not take
    monkeypatch.setenv(AUTO_ENV, other)
    onednn_choice.cache_clear()                                            # read once per process: read it again
    try:
        seg = build_segmentor(TINY_CONFIG, class_names=VOCAB)
        assert seg.onednn_linear is (other == "true" and _AVAILABLE) and seg.fp32_linear["set"] == "auto"
        assert seg.fp32_linear["why"] == onednn_choice()[1]
        assert seg.use_onednn_linear(other != "true").fp32_linear["why"] == "set by the user"
        monkeypatch.setenv(AUTO_ENV, "yes")
        onednn_choice.cache_clear()
        with pytest.raises(ValueError, match=r"PROXYCLIP_ONEDNN_LINEAR='yes' is not a choice: set it to true \(oneDNN\) "
                                             r"or false .* or unset it"):
            TrainingFreeSegmentor(clip_pretrained="/nonexistent/clip.bin", clip_quick_gelu=True,   # refused first
                                  clip_mean=(0.5, 0.5, 0.5), clip_std=(0.5, 0.5, 0.5))
    finally:
        onednn_choice.cache_clear()                                        # the next call reads the restored variable


def test_a_setting_that_is_not_a_choice_is_refused():
    from proxyclip import TrainingFreeSegmentor

    with pytest.raises(ValueError, match=r"onednn_linear='fast' is not a choice: use true .* false .* or \"auto\""):
        # a checkpoint that does not exist, with its statistics: loading it would fail, so the refusal came first
        TrainingFreeSegmentor(clip_pretrained="/nonexistent/clip.bin", clip_quick_gelu=True, clip_mean=(0.5, 0.5, 0.5),
                              clip_std=(0.5, 0.5, 0.5), onednn_linear="fast")
