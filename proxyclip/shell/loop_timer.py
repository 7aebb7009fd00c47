"""How long an evaluation loop takes, and how much of it the device spends waiting for data.

On a GPU the loop runs ahead of the device, so host clocks around a batch measure the host, not the GPU.
CUDA events recorded at the end of each batch and at the start of the next give, on the GPU's own timeline,
the gap in which it had nothing to do because the next batch had not arrived: no synchronisation is added
(the events are read once, at the end). On a CPU the work is synchronous and host clocks are exact.
"""
from __future__ import annotations

import time

import torch


class LoopTimer:
    """`start()`, then `batch_start()` / `batch_end()` around each batch, then `stop(images) -> dict`."""

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
        self._t0, self._started_at = time.perf_counter(), time.time()
        self._last_end = self._mark()
        self._gaps: list = []          # (end of previous batch or loop start, start of this batch)

    def batch_start(self) -> None:
        self._gaps.append((self._last_end, self._mark()))

    def batch_end(self) -> None:
        self._last_end = self._mark()

    def stop(self, images: int) -> dict[str, float]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            wait = sum(a.elapsed_time(b) for a, b in self._gaps) / 1000.0
        else:
            wait = sum(b - a for a, b in self._gaps)
        loop = time.perf_counter() - self._t0
        return {"started_at": self._started_at, "test_loop_s": loop, "images": images, "images_per_s": images / max(loop, 1e-9),
                "data_wait_s": wait, "data_wait_share": wait / max(loop, 1e-9)}
