"""fp32 linear layers on CPU through oneDNN: the same product, on the CPU's widest vector units.

PyTorch computes an fp32 `F.linear` on CPU with MKL's sgemm, which takes its AVX2 kernels on non-Intel
CPUs. oneDNN (`torch.ops.mkldnn._linear_pointwise`, the op inductor emits for CPU linears) dispatches on
the CPU's features and uses AVX-512 wherever it exists. Both accumulate in fp32, so outputs differ by
rounding only (~1e-6 relative). ViT-B shapes on a 2-core AMD EPYC (Zen 5): ~215 -> ~390 GFLOP/s.

It is taken only where it is a pure speed-up: fp32 tensors on an x86 CPU, autograd off (the op has no
backward), autocast off (autocast's bf16 / fp16 linears already run on oneDNN), eager mode (under
torch.compile inductor picks its own kernels). Everything else, GPUs included, goes to `F.linear`.

Which of the two is faster depends on the CPU, so `onednn_choice` decides once per process, from the CPU's vendor
and features (no timing: the same machine always takes the same path, on every rank):
  AVX-512, not Intel (AMD Zen 4 / Zen 5)  oneDNN: MKL keeps to AVX2 there. Zen 5: oneDNN ~1.8x MKL's GFLOP/s;
                                         Zen 4: the same GEMM speed, 3-6 % faster overall.
  Intel (AVX-512, AMX)                  MKL: its own kernels use AVX-512 and beat oneDNN's fp32 (Xeon family 6
                                         model 207: 1.54x against 1.37x the original-like baseline, VOC-like).
  AVX2 only                             MKL: both take AVX2 kernels; MKL's were as fast or faster (Zen 3).
benchmarks/throughput.py times both paths on the machine at hand and says whether the choice was the faster one.
`PROXYCLIP_ONEDNN_LINEAR=true|false` sets what "auto" takes in place of this rule, on any machine (the tests run
either path so: README, Tests). An explicit true or false still wins; oneDNN is still taken only where it exists.

`cpu_bf16` reads the other CPU fact a run depends on: whether bf16 matrix products run on native instructions
(AVX512_BF16, or Intel's AMX-BF16). Without them bf16 autocast is emulated and slower than fp32: 6x on an AVX2-only
AMD EPYC (benchmarks/README.md), where PyTorch's own bf16 GEMM loop runs instead of oneDNN's kernels.
"""
from __future__ import annotations

import functools
import os
import platform
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _probe() -> bool:
    """The op is inductor's, not public API: use it only if it exists and computes F.linear on this build."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
        return False
    # fixed values, not torch.randn: importing must not move the user's random state
    x, weight, bias = torch.linspace(-1, 1, 120).view(3, 5, 8), torch.linspace(1, -2, 32).view(4, 8), torch.arange(4.0)
    try:
        with torch.no_grad():
            out = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    except (AttributeError, RuntimeError, TypeError):
        return False
    return bool(torch.allclose(out, F.linear(x, weight, bias), atol=1e-5))


_AVAILABLE = _probe()


def cpu_vendor_and_flags() -> tuple[str, frozenset[str]]:
    """("GenuineIntel" | "AuthenticAMD" | ..., the CPU's feature flags) from /proc/cpuinfo; ("", {}) elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", frozenset()
    vendor = re.search(r"^vendor_id\s*:\s*(\S+)", text, flags=re.M)
    flags = re.search(r"^flags\s*:(.*)$", text, flags=re.M)
    return (vendor.group(1) if vendor else ""), frozenset(flags.group(1).split() if flags else ())


# /proc/cpuinfo's names of the instructions a bf16 matrix product runs on natively, and PyTorch's probe of each
# (its cpuinfo reading, for CPUs whose /proc/cpuinfo cannot be read; an AMX tile unit always has AMX-BF16 so far)
BF16_FEATURES = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}


def bf16_support(machine: str, flags: frozenset[str] | None) -> tuple[bool | None, str]:
    """(bf16 matmuls run on native instructions, why) for a `machine` CPU (platform.machine()) with these feature
    flags (None: not read); native None where this cannot be told."""
    if machine.lower() not in ("x86_64", "amd64"):
        return None, f"unknown: a {machine or 'non-x86'} CPU, whose bf16 instructions this check does not read"
    if flags is None:
        return None, "unknown: the CPU's feature flags could not be read"
    native = [name.upper() for name in BF16_FEATURES if name in flags]
    if native:
        return True, f"native: the CPU has {' and '.join(native)}"
    return False, "emulated: the CPU has no AVX512_BF16 or AMX_BF16 instructions"


def cpu_bf16() -> dict[str, bool | None | str]:
    """{"native": True | False | None, "why": ...}: whether this CPU multiplies bf16 natively (see `bf16_support`)."""
    flags: frozenset[str] | None = cpu_vendor_and_flags()[1] or None
    probes = [getattr(torch.cpu, probe, None) for probe in BF16_FEATURES.values()]
    if flags is None and all(probes):   # no /proc/cpuinfo (Windows, macOS): PyTorch's own reading of the features
        flags = frozenset(name for name, probe in zip(BF16_FEATURES, probes) if probe())
    native, why = bf16_support(platform.machine(), flags)
    return {"native": native, "why": why}


AUTO_ENV = "PROXYCLIP_ONEDNN_LINEAR"     # true | false: the path "auto" takes, in place of the rule below


def forced_by_env(value: str | None) -> bool | None:
    """AUTO_ENV's value as the path "auto" takes: None where unset or empty; anything but true or false refused."""
    if not value:
        return None
    if value in ("true", "false"):
        return value == "true"
    raise ValueError(f"{AUTO_ENV}={value!r} is not a choice: set it to true (oneDNN) or false (PyTorch's own linears) "
                     "for onednn_linear=\"auto\" to take that path, or unset it for this CPU's faster one.")


def choose_onednn(available: bool, vendor: str, flags: frozenset[str], forced: bool | None = None) -> tuple[bool, str]:
    """(use oneDNN for fp32 CPU linears, why): the rule in this module's docstring, unless `forced` (AUTO_ENV's)."""
    if not available:
        return False, "PyTorch's own (MKL): oneDNN's linear op is not available on this CPU or build"
    if forced is not None:
        kernel = "oneDNN" if forced else "PyTorch's own (MKL)"
        return forced, f"{kernel}: {AUTO_ENV}={str(forced).lower()} sets what \"auto\" takes"
    if vendor == "GenuineIntel":
        return False, "PyTorch's own (MKL): on Intel CPUs MKL's fp32 kernels use AVX-512 themselves and beat oneDNN's"
    if "avx512f" in flags:
        return True, f"oneDNN: MKL keeps to its AVX2 kernels on this {vendor or 'non-Intel'} CPU, oneDNN uses its AVX-512"
    return False, "PyTorch's own (MKL): without AVX-512 both take AVX2 kernels, and MKL's are as fast or faster"


@functools.cache
def onednn_choice() -> tuple[bool, str]:
    """This machine's fp32 linear path, decided once per process (see the module docstring)."""
    return choose_onednn(_AVAILABLE, *cpu_vendor_and_flags(), forced=forced_by_env(os.environ.get(AUTO_ENV)))


def linear_path(setting: bool | str) -> tuple[bool, str]:
    """(use oneDNN, why) for the segmentor's `onednn_linear` setting: true, false or "auto"; anything else refused."""
    if isinstance(setting, bool):
        return setting, "set by the user"
    if setting == "auto":
        return onednn_choice()
    raise ValueError(f"onednn_linear={setting!r} is not a choice: use true (oneDNN), false (PyTorch's own linears) or "
                     "\"auto\" (this CPU's faster one, decided from its vendor and features).")


def onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear(x, weight)` would run on oneDNN."""
    return (_AVAILABLE and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling())   # inductor lowers this op only with frozen weights


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear(x, weight, bias)`: x [..., K], weight [N, K], bias [N] -> [..., N]."""
    if onednn_applies(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class OneDNNLinear(nn.Linear):
    """`nn.Linear` whose fp32 CPU inference runs on oneDNN; same parameters, same state_dict keys."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def swap_linears(module: nn.Module, onednn: bool = True) -> nn.Module:
    """In place: every `nn.Linear` in `module` becomes a `OneDNNLinear` sharing its parameters (or back, onednn=False).

    Subclasses of nn.Linear other than `NonDynamicallyQuantizableLinear` (a marker class that
    nn.MultiheadAttention uses for `out_proj`) are left alone: they may compute something else.
    """
    plain = (nn.Linear, nn.modules.linear.NonDynamicallyQuantizableLinear)
    source, target = (plain, OneDNNLinear) if onednn else ((OneDNNLinear,), nn.Linear)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in source:
                new = target(child.in_features, child.out_features, bias=child.bias is not None, device="meta")
                new.weight, new.bias = child.weight, child.bias
                setattr(parent, name, new.train(child.training))
    return module
