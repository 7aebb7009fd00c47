"""Measuring helpers for benchmarks/throughput.py: peak memory, the machine's name, fake inputs, data waiting.

Peak memory: on CUDA `torch.cuda.max_memory_allocated` above what was allocated before; on CPU the
peak resident set size above the level before, sampled every 2 ms from /proc/self/statm by a thread
(torch kernels release the GIL), after `malloc_trim(0)` so that memory freed by an earlier run is
given back first and not counted as headroom. No dependency beyond the standard library and torch.
"""
from __future__ import annotations

import ctypes
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import torch

from datamodules.io import read_image
from datamodules.loader import check_worker_sockets
from datamodules.transforms import KeepRatioResize
from proxyclip.shell.loop_timer import device_name  # noqa: F401 - the one namer of a device, used here and by the scripts

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except OSError:  # not Linux: the process's high-water mark is the best there is
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """`with PeakMemory(device) as mem: ...` then `mem.peak_bytes`: the block's peak above its start."""

    def __init__(self, device: torch.device, interval_s: float = 0.002):
        self.device, self.interval_s, self.peak_bytes = torch.device(device), interval_s, 0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        _malloc_trim()
        self._base = self._peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
            return
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self._peak, _rss_bytes()) - self._base


def synchronize(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_capability() -> dict:
    """What the CPU kernels can use: PyTorch's dispatch level (e.g. AVX512, AVX2) and the relevant CPU flags.
    CPU timings only compare within one machine: an AVX2-only core runs the same fp32 crop ~3x slower, and bf16
    helps only with avx512_bf16 or AMX (without them autocast emulates bf16 and is slower than fp32)."""
    try:
        flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), flags=re.M).group(1).split())
    except (OSError, AttributeError):
        flags = set()
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "unknown"
    return {"torch_cpu_capability": capability, "cpu_flags": [f for f in CPU_FLAGS if f in flags]}


def machine_slug(device: torch.device) -> str:
    """A short file name for this machine, from `device_name`: e.g. amd-epyc-family-25-model-17-2c, nvidia-h100-80gb-hbm3."""
    name = re.sub(r"\((r|tm)\)|cpu|processor|@.*?ghz", " ", device_name(device).lower())
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")[:48] or "unknown"


def fake_image(height: int, width: int, seed: int) -> np.ndarray:
    """A photo-like uint8 RGB image [H, W, 3]: smooth random colour fields plus mild noise (JPEG-friendly)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, max(2, height // 32), max(2, width // 32)), dtype=np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
    image = smooth.permute(1, 2, 0).numpy() * 255 + rng.normal(0, 8, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


class ImageFolderDataset(torch.utils.data.Dataset):
    """Decode (datamodules.io.read_image) and keep-ratio resize in the worker."""

    def __init__(self, paths: list[Path], long: int, short: int):
        self.paths, self.long, self.short = paths, long, short

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = read_rgb(self.paths[index])
        return torch.from_numpy(keep_ratio_resize(image, self.long, self.short)).permute(2, 0, 1).contiguous()


def read_rgb(path: Path) -> np.ndarray:
    return read_image(path)


def keep_ratio_resize(image: np.ndarray, long: int, short: int) -> np.ndarray:
    """docs/method.md §7's (long, short) keep-ratio resize of a uint8 [H, W, 3] image."""
    return KeepRatioResize(long, short).apply(image)


def data_wait_share(run, paths: list[Path], long: int, short: int, device: torch.device, workers: int = 2) -> dict:
    """Feed `run([image])` through a DataLoader with `workers` processes; the share of time spent waiting for data."""
    check_worker_sockets(workers)
    loader = torch.utils.data.DataLoader(ImageFolderDataset(paths, long, short), batch_size=1, num_workers=workers,
                                         collate_fn=list, persistent_workers=False)
    waits, computes = [], []
    start = time.perf_counter()
    iterator = iter(loader)                                     # starts the workers
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            break
        t1 = time.perf_counter()
        run([image.to(device) for image in batch])
        synchronize(device)
        waits.append(t1 - t0)
        computes.append(time.perf_counter() - t1)
    total = time.perf_counter() - start
    # The first wait includes starting the workers and decoding with nothing to overlap: reported apart.
    steady_wait, steady_compute = sum(waits[1:]), sum(computes[1:])
    return {"images": len(paths), "workers": workers, "total_s": total, "wait_s": sum(waits),
            "first_wait_s": waits[0] if waits else 0.0, "compute_s": sum(computes),
            "wait_share": sum(waits) / max(total, 1e-9),
            "steady_wait_share": steady_wait / max(steady_wait + steady_compute, 1e-9)}


class OtherLoad:
    """`with OtherLoad() as load: ...` then `load.share`: the machine's CPU capacity that other processes (and the
    hypervisor, as steal) used meanwhile, 0..1. On a shared machine a busy neighbour skews timings; this says so."""

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        try:
            with open("/proc/stat") as handle:
                values = [int(v) for v in handle.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        except OSError:
            return 0.0, 0.0, time.perf_counter()
        times = os.times()
        busy = (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
        return busy, times.user + times.system + times.children_user + times.children_system, time.perf_counter()

    def __enter__(self) -> "OtherLoad":
        self._start, self.share = self._sample(), 0.0
        return self

    def __exit__(self, *exc) -> None:
        busy, own, wall = (b - a for a, b in zip(self._start, self._sample()))
        self.share = max(0.0, busy - own) / max(wall * (os.cpu_count() or 1), 1e-9)


_KERNEL_PROBE = """
import torch, torch.nn.functional as F
from proxyclip.method.onednn_linear import linear
x, w = torch.randn(196, 768), torch.randn(768, 768)
with torch.no_grad():
    print("PROBE fp32", flush=True)
    linear(x, w)
    print("PROBE bf16", flush=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        F.linear(x, w), torch.bmm(x[None], w.t()[None])
    print("PROBE end", flush=True)
"""


def onednn_kernels() -> dict:
    """Which oneDNN kernels this CPU's linears take (oneDNN's own verbose log, in a fresh process): its ISA, the fp32
    linear (oneDNN's, whichever path the segmentor chose) and autocast's bf16 linear and batched matmul, e.g.
    brg_matmul:avx512_core_amx on AMX, brg_matmul:avx512_core_bf16 on AVX-512 bf16; none where oneDNN takes no
    bf16 matmul on the CPU (PyTorch's own emulated bf16 GEMM runs, slower than fp32)."""
    import subprocess
    import sys

    env = {**os.environ, "ONEDNN_VERBOSE": "1", "DNNL_VERBOSE": "1"}
    out = subprocess.run([sys.executable, "-c", _KERNEL_PROBE], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    isa = re.search(r"info,cpu,isa:([^\n]+)", out)
    found, part = {"fp32": [], "bf16": []}, None
    for line in out.splitlines():
        if line.startswith("PROBE "):
            part = line.split()[1]
        elif part in found and ",exec,cpu," in line:
            fields = line.split(",exec,cpu,", 1)[1].split(",")       # kind, implementation, ...
            found[part].append(f"{fields[0]} {fields[1]}")
    return {"onednn_isa": isa.group(1).strip() if isa else "unknown",
            "onednn_fp32_linear": sorted(set(found["fp32"])), "onednn_bf16_matmuls": sorted(set(found["bf16"]))}
