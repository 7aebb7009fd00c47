"""What device_check.py's checks build and feed: the segmentor at the run's size, VOC-like images, a fake VOC
layout on disk, `main.py test` in a subprocess."""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks import throughput
from benchmarks.measure import fake_image
from proxyclip import TrainingFreeSegmentor

REPO = Path(__file__).resolve().parents[1]
VOC = throughput.SETTINGS["voc"]
CITY = throughput.SETTINGS["cityscapes"]


def real_size(args) -> dict:
    return throughput.TINY_MODEL if args.smoke else throughput.REAL_SIZE_MODEL


def build(args, device, crop_batch_size: int = 16, **kwargs) -> TrainingFreeSegmentor:
    torch.manual_seed(0)
    spec = {**real_size(args), **kwargs}
    return TrainingFreeSegmentor(**spec, crop_batch_size=crop_batch_size, class_names=throughput.vocabulary()).eval().to(device)


def voc_images(count: int, device) -> list[torch.Tensor]:
    return throughput.setting_images(VOC, count, torch.device(device))


def fake_voc(root: Path, count: int, size: tuple[int, int], workers: int = 1) -> Path:
    """`count` JPEGs of `size` (H, W) and palette labels (0..20, 255) in the VOC2012 layout."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"2007_{i:06d}" for i in range(count)]
    jobs = [(voc, sid, size, i) for i, sid in enumerate(ids)]
    if workers > 1:
        # spawn, not fork: a forked child of a process whose OpenMP pool already ran can hang in its first kernel
        with multiprocessing.get_context("spawn").Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            pool.map(write_pair, jobs, chunksize=16)
    else:
        for job in jobs:
            write_pair(job)
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids) + "\n")
    return voc


def write_pair(job) -> None:
    from PIL import Image

    voc, sid, (h, w), seed = job
    Image.fromarray(fake_image(h, w, seed)).save(voc / "JPEGImages" / f"{sid}.jpg", quality=90)
    label = np.random.default_rng(seed).integers(0, 21, (h // 25 + 1, w // 25 + 1)).astype(np.uint8)
    label = np.kron(label, np.ones((25, 25), np.uint8))[:h, :w]
    label[:3] = 255
    Image.fromarray(label, mode="L").save(voc / "SegmentationClass" / f"{sid}.png")


def main_test(root: Path, out: Path, model: Path | str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "main.py"), "test", "--config", str(REPO / "configs/voc21.yaml"), "--model", str(model),
           "--data.init_args.root", str(root), "--model.output_dir", str(out), "--trainer.logger", "false",
           "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
