"""How long an evaluation loop takes, and how much of it the device spends waiting for data.

On a GPU the loop runs ahead of the device, so host clocks around a batch measure the host, not the GPU.
CUDA events recorded at the end of each batch and at the start of the next give, on the GPU's own timeline,
the gap in which it had nothing to do because the next batch had not arrived: no synchronisation is added
(the events are read once, at the end). On a CPU the work is synchronous and host clocks are exact.

Under DDP each process times its own loop; `run_timing` says which figures cover every process and which are
process 0's own.

Peak memory: on CUDA `torch.cuda.max_memory_allocated` of the loop alone (its peak statistics are reset when the loop
starts; the tensors of the allocator, not what it caches); on a CPU the process's peak resident set size, which
also covers building the model (the kernel keeps only the process's high-water mark).
"""
from __future__ import annotations

import os
import platform
import re
import resource
import sys
import time
from pathlib import Path

import torch


class LoopTimer:
    """`start()`, then `batch_start()` / `batch_end()` around each batch, then `stop() -> dict` (this process's loop)."""

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self.device = device

    def _mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._t0, self._started_at = time.perf_counter(), time.time()
        self._last_end = self._mark()
        self._gaps: list = []          # (end of previous batch or loop start, start of this batch)

    def batch_start(self) -> None:
        self._gaps.append((self._last_end, self._mark()))

    def batch_end(self) -> None:
        self._last_end = self._mark()

    def stop(self) -> dict[str, float]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            wait = sum(a.elapsed_time(b) for a, b in self._gaps) / 1000.0
        else:
            wait = sum(b - a for a, b in self._gaps)
        loop = time.perf_counter() - self._t0
        return {"started_at": self._started_at, "test_loop_s": loop, "data_wait_s": wait, "data_wait_share": wait / max(loop, 1e-9),
                "peak_memory_bytes": self.peak_memory_bytes()}

    def peak_memory_bytes(self) -> int:
        if self.cuda:
            return int(torch.cuda.max_memory_allocated(self.device))
        # ru_maxrss: KiB on Linux, bytes on macOS
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)

    def memory_kind(self) -> str:
        return "cuda max_memory_allocated during the test loop" if self.cuda else "cpu peak RSS of the process"


def device_name(device: torch.device | str) -> str:
    """The GPU's name on CUDA, else the CPU model, family and model number (from /proc/cpuinfo) and its core count.

    The numbers matter: "AMD EPYC" names Zen 4 (family 25) and Zen 5 (family 26) alike, whose fp32 GEMM kernels
    differ by ~1.8x, so their timings must not be read as one machine's (benchmarks/ names its result files by it)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    field = {key: re.findall(rf"^{key}\s*:\s*(.+)$", info, flags=re.M)[:1] for key in ("model name", "cpu family", "model")}
    name = field["model name"][0].strip() if field["model name"] else name
    if field["cpu family"] and field["model"]:
        name += f" (family {field['cpu family'][0].strip()}, model {field['model'][0].strip()})"
    return f"{name} {os.cpu_count()}c"


def run_timing(own: dict[str, float], own_images: int, images: int, longest_loop_s: float, processes: int,
               text_encoding_s: float, peak_memory_bytes: int, timer: LoopTimer) -> dict[str, float | int | str]:
    """metrics.json's `timing`: `own` is process 0's `LoopTimer.stop()`, `images` every process's images,
    `longest_loop_s` the slowest process's loop (the processes run side by side: the run's loop time) and
    `peak_memory_bytes` the largest process's peak (`timer` names its kind and the device)."""
    return {"processes": processes, "images": images, "test_loop_s": longest_loop_s,
            "images_per_s": images / max(longest_loop_s, 1e-9), "text_encoding_s": text_encoding_s,
            "peak_memory_bytes": peak_memory_bytes, "peak_memory_kind": timer.memory_kind(), "device_name": device_name(timer.device),
            "started_at": own["started_at"], "data_wait_s": own["data_wait_s"], "data_wait_share": own["data_wait_share"],
            "rank0_images": own_images, "rank0_test_loop_s": own["test_loop_s"],
            "scope": "images, test_loop_s (the slowest process's loop), images_per_s and peak_memory_bytes (the largest "
                     "process's; on a CPU the whole process's peak, model building included) cover every process; "
                     "text_encoding_s, started_at, data_wait_s, data_wait_share and rank0_* are process 0's own"}
