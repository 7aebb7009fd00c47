"""DataLoader settings that feed the device the run is on: workers and pinned memory chosen from the machine."""
from __future__ import annotations

import multiprocessing.connection
import os
import sys
import tempfile
from typing import Any

import torch

from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

from .errors import DataError

MAX_IMAGES_PER_STEP = 8
MAX_WORKERS = 8  # decoding and resizing a 500 x 375 JPEG takes ~3 ms: 8 workers outrun one GPU on every benchmark
UNIX_SOCKET_PATH_MAX = 107  # Linux's sun_path holds 108 bytes, the last one the terminating zero


def usable_cpus() -> int:
    """CPUs this process may run on (a SLURM or container allocation, not the whole machine)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def loader_settings(trainer: Any, batch_size: int | None, num_workers: int | None, pin_memory: bool | None,
                    num_classes: int = 1) -> dict[str, Any]:
    """`batch_size` / `num_workers` / `pin_memory` for the DataLoader; None picks them from the trainer's device.

    Images per step on a GPU: 8, where one VOC image (2 crops) would leave an H100 waiting for kernel launches
    (65 images/s at 1 per step, 212 at 8: benchmarks/results/nvidia-h100-80gb-hbm3.md), fewer for large
    vocabularies, whose per-image canvases ([queries, H, W] fp32) dominate memory: 1600 // classes, so PC459
    takes 3 and ADE847 1. On a CPU: 1 (the crops of one image already fill it).

    On a GPU: one worker per CPU this process's share of the machine allows (its CPUs divided by the processes
    started on this node, one left for the main process), at most MAX_WORKERS, and pinned memory, so that the
    host-to-device copies run asynchronously. On a CPU: no workers (decoding is ~1 % of a crop's compute, and
    workers would take cores from the model) and no pinning.
    """
    on_gpu = trainer is not None and getattr(trainer.strategy.root_device, "type", "cpu") == "cuda"
    if batch_size is None:
        batch_size = max(1, min(MAX_IMAGES_PER_STEP, 1600 // max(1, num_classes))) if on_gpu else 1
    if num_workers is None:
        local_processes = max(1, int(getattr(trainer, "num_devices", 1) or 1)) if trainer is not None else 1
        num_workers = min(MAX_WORKERS, max(0, usable_cpus() // local_processes - 1)) if on_gpu else 0
    if pin_memory is None:
        pin_memory = on_gpu
    check_worker_sockets(int(num_workers))
    return {"batch_size": int(batch_size), "num_workers": int(num_workers), "pin_memory": bool(pin_memory)}


def check_worker_sockets(num_workers: int) -> None:
    """Refuse a temporary folder too long for the sockets DataLoader workers hand their batches through.

    With PyTorch's default sharing on Linux (file descriptors), a worker passes each tensor through a Unix socket
    made in multiprocessing's folder under the temporary folder; when that path is longer than a socket address can
    be, the worker's send fails in a background thread and the main process waits for the batch forever, without a
    word. The address asked for here is the one a (forked) worker would use: the same per-process folder, the same
    naming, whatever the Python version does about long folders.
    """
    if num_workers <= 0 or sys.platform != "linux" or torch.multiprocessing.get_sharing_strategy() != "file_descriptor":
        return
    address = multiprocessing.connection.arbitrary_address("AF_UNIX")
    if len(os.fsencode(address)) <= UNIX_SOCKET_PATH_MAX:
        return
    temp = tempfile.gettempdir()
    allowed = UNIX_SOCKET_PATH_MAX - (len(os.fsencode(address)) - len(os.fsencode(temp)))
    raise DataError(f"The temporary folder {temp} ({len(os.fsencode(temp))} bytes) is too long for the sockets that "
                    f"DataLoader workers pass batches through (at most {allowed} bytes with num_workers > 0; the run "
                    f"would hang). Set TMPDIR to a shorter folder (e.g. TMPDIR=/tmp), or read in the main process "
                    f"with --data.init_args.num_workers 0.")


def each_once_sampler(dataset: Any, trainer: Any, what: str) -> UnrepeatedDistributedSampler | None:
    """Under several processes, a sampler that gives each item of `dataset` to exactly one process (Lightning keeps a
    loader that already has a DistributedSampler; its own default would pad by repeating items); None for one.
    `what` names the items for the refusal when there are fewer than processes."""
    if trainer is None or trainer.world_size <= 1:
        return None
    if len(dataset) < trainer.world_size:
        n = len(dataset)
        raise DataError(f"{what} has {n} image{'' if n == 1 else 's'}, fewer than the {trainer.world_size} processes; "
                        f"run with at most {n} device{'' if n == 1 else 's'}.")
    return UnrepeatedDistributedSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False)
