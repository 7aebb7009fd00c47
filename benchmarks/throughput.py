"""Throughput and peak memory of ProxyCLIP inference: an original-like baseline against ours, in one run.

    .venv/bin/python benchmarks/throughput.py [--quick] [--device cuda] [--voc 6] [--city 3] [--crop-batch-size N]
    .venv/bin/python benchmarks/throughput.py --methods [PRESET ...] [--device cuda] [--images N] [--rounds N] [--tiny]

`--methods`: each preset (default: every shipped one, ProxyCLIP's first) on the same Cityscapes-like images on the
same device, its images/s and peak memory as ratios to ProxyCLIP's (method_cost.py measures; results go to
benchmarks/results/<machine>-methods.json and .md). Without it:

Variants, all CLIP ViT-B-16 + DINO ViT-B/8 with the same random weights (no checkpoints needed):
  baseline  one crop at a time, explicit softmax(QKᵀ)V in the VFM, sequence-first MHA in CLIP (benchmarks/original_like.py);
            fp32 on CPU; on GPU fp16 (the input normalised in fp32, then cast) with torch.cuda.empty_cache() after
            each crop, as the original.
  ours_fp32 crops batched (`crop_batch_size`: 4 on CPU, 16 on GPU), fused attention, fp32 (CPU linears: the segmentor's
            `onednn_linear="auto"`, oneDNN or PyTorch's own MKL, whichever this CPU's vendor and features favour).
  ours_bf16 the same under bf16 autocast.
  ours_fp32_torch_linear / ours_fp32_onednn (CPU only) ours_fp32 on the linear path "auto" did not take: whether the
            choice was the faster one on this machine.
  ours_fp16 (CUDA only) the same under fp16 autocast.
Inputs: VOC-like 500x375 images resized (2048, 336) keep-ratio (448x336, crop 336 / stride 112) and Cityscapes-like
2048x1024 images resized (2048, 448) (896x448, crop 224 / stride 112), docs/method.md §5 and §7. The variants run image by
image in rotating order, so that the machine's speed drifts hit all of them alike; speedups are ratios of median
seconds per image, and the CPU share other processes took meanwhile is recorded. Results go to
benchmarks/results/<machine>.json and .md. Targets: CPU fp32 >= 1.5x, bf16 >= 2x; GPU bf16 >= 5x and < 8 GB peak
for the 2048x1024 image.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import (OtherLoad, PeakMemory, cpu_capability, data_wait_share, device_name,  # noqa: E402
                                fake_image, keep_ratio_resize, machine_slug, onednn_kernels, synchronize)
from benchmarks.original_like import fused_attention_report, make_original_like  # noqa: E402
from benchmarks.method_cost import add_method_arguments, image_size, measure, settle_method_arguments  # noqa: E402
from benchmarks.report import setting_stats, summarise, write, write_methods  # noqa: E402
from proxyclip import TrainingFreeSegmentor  # noqa: E402
from proxyclip.method.onednn_linear import cpu_bf16  # noqa: E402
from proxyclip.method.sliding_window import sliding_windows  # noqa: E402

# CLIP ViT-B-16 (QuickGELU, as OpenAI's weights) + DINO ViT-B/8 at full size with random weights: no checkpoint needed.
REAL_SIZE_MODEL = dict(clip_model="ViT-B-16", clip_pretrained=None, clip_quick_gelu=True, vfm="dino_vitb8", vfm_pretrained=False)
TINY_MODEL = dict(clip_model=dict(embed_dim=32, vision_cfg=dict(image_size=224, layers=2, width=64, head_width=16, patch_size=16),
                                  text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)),
                  clip_pretrained=None, vfm="dino_vitb8", vfm_pretrained=False, vfm_kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2})

SETTINGS = {  # name: original (H, W), docs/method.md §7 resize (long, short), crop, stride, file type for the DataLoader
    "voc": dict(size=(375, 500), resize=(2048, 336), crop=336, stride=112, ext=".jpg"),
    "cityscapes": dict(size=(1024, 2048), resize=(2048, 448), crop=224, stride=112, ext=".png"),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="2 VOC-like and 1 Cityscapes-like image (8.8 min on a 2-core Zen 4 EPYC)")
    parser.add_argument("--voc", type=int, default=None, help="VOC-like images per variant (default 6)")
    parser.add_argument("--city", type=int, default=None, help="Cityscapes-like images per variant (default 3)")
    parser.add_argument("--crop-batch-size", type=int, default=None,
                        help="crops per forward (default: 4 on CPU, where batches of 16 run 10-25 %% slower because their "
                             "activations leave the cache; 16 on CUDA)")
    parser.add_argument("--images-per-step", type=int, default=None,
                        help="images per call for ours (the DataModule's batch_size; default 8 on CUDA, where one VOC image "
                             "of 2 crops leaves the GPU waiting for kernel launches, 1 on CPU); the baseline takes 1, as the original")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--tiny", action="store_true", help="tiny random models: checks the script itself, measures nothing")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    add_method_arguments(parser)
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # internal: "variant:setting", peak memory in a fresh process
    args = parser.parse_args()
    # the variants' options mean nothing to the per-method mode (each preset runs `main.py test`): refused, not ignored
    variant_only = [flag for flag, value in (("--quick", args.quick or None), ("--voc", args.voc), ("--city", args.city),
                                             ("--crop-batch-size", args.crop_batch_size),
                                             ("--images-per-step", args.images_per_step), ("--threads", args.threads))
                    if value is not None]
    if args.methods is not None and variant_only:
        parser.error(f"{', '.join(variant_only)} {'applies' if len(variant_only) == 1 else 'apply'} to the variants' "
                     "comparison, not to --methods (each preset runs `main.py test` on --images Cityscapes-like images): "
                     "leave them out, or drop --methods")
    args.voc = 6 if args.voc is None else args.voc
    args.city = 3 if args.city is None else args.city
    if args.quick:
        args.voc, args.city = 2, 1
    if args.crop_batch_size is None:
        args.crop_batch_size = 16 if args.device == "cuda" else 4
    if args.images_per_step is None:
        args.images_per_step = 8 if args.device == "cuda" else 1
    settle_method_arguments(parser, args)
    return args


def vocabulary(n: int = 20, seed: int = 0) -> list[str]:
    """A random vocabulary of n made-up two-syllable-pair names (the weights are random anyway)."""
    rng = random.Random(seed)
    syllables = ["ba", "ko", "ri", "te", "mu", "sa", "lo", "ne", "pi", "du", "ga", "ve"]
    return [" ".join("".join(rng.choice(syllables) for _ in range(2)) for _ in range(2)) for _ in range(n)]


def build(args: argparse.Namespace, device: torch.device, quiet: bool = False) -> dict:
    """{variant: (segmentor, autocast context factory)} with identical weights."""
    torch.manual_seed(0)  # the same random weights every run: the text-embedding cache hits from the second run on
    ours = TrainingFreeSegmentor(**(TINY_MODEL if getattr(args, "tiny", False) else REAL_SIZE_MODEL),
                              crop_batch_size=args.crop_batch_size, class_names=vocabulary()).eval().to(device)
    start = time.perf_counter()
    ours.text_embeddings()
    base = make_original_like(ours, half=device.type == "cuda")
    if not quiet:
        print(f"text embeddings: {time.perf_counter() - start:.1f} s (disk cache: {ours.text_cache})", flush=True)
        print(f"attention paths: ours {fused_attention_report(ours)}, baseline {fused_attention_report(base)}", flush=True)
    plain = contextlib.nullcontext
    variants = {"baseline": (base, plain), "ours_fp32": (ours, plain),
                "ours_bf16": (ours, lambda: torch.autocast(device.type, dtype=torch.bfloat16))}
    if device.type == "cpu":   # the fp32 linear path "auto" did not choose, to show whether the choice was right here
        other = "ours_fp32_torch_linear" if ours.onednn_linear else "ours_fp32_onednn"
        variants[other] = (copy.deepcopy(ours).use_onednn_linear(not ours.onednn_linear), plain)
    else:
        variants["ours_fp16"] = (ours, lambda: torch.autocast(device.type, dtype=torch.float16))
    return variants


def run_once(seg: TrainingFreeSegmentor, autocast, image: torch.Tensor, out_size: tuple[int, int], device) -> tuple:
    """(seconds, labels [H, W]) for one image at its original size."""
    with torch.no_grad(), autocast():
        synchronize(device)
        start = time.perf_counter()
        labels = seg.segment_batch([image], [out_size])[0]
        synchronize(device)
    return time.perf_counter() - start, labels


def setting_images(cfg: dict, count: int, device: torch.device) -> list[torch.Tensor]:
    """`count` photo-like images [3, h, w] uint8 of the setting's original size, keep-ratio resized (docs/method.md §7)."""
    return [torch.from_numpy(keep_ratio_resize(fake_image(*cfg["size"], seed), *cfg["resize"])).permute(2, 0, 1).to(device)
            for seed in range(count)]


def run_group(seg: TrainingFreeSegmentor, autocast, images: list[torch.Tensor], out_size: tuple[int, int], device,
              step: int) -> tuple[float, list[torch.Tensor]]:
    """(seconds, labels) for `images`, `step` of them per call (the DataModule's images per step)."""
    seconds, labels = 0.0, []
    for start in range(0, len(images), step):
        with torch.no_grad(), autocast():
            synchronize(device)
            began = time.perf_counter()
            labels += seg.segment_batch(images[start:start + step], [out_size] * len(images[start:start + step]))
            synchronize(device)
        seconds += time.perf_counter() - began
    return seconds, labels


def run_setting(name: str, cfg: dict, count: int, variants: dict, device: torch.device, peaks: dict, step: int = 1) -> dict:
    """Time every variant on `count` images of one setting, in rounds of `step` images and rotating order; ours takes
    a round's images in one call (crops of all of them batched), the baseline one image per call, as the original's
    batch size 1. Seconds per image = a round's seconds / its images. Labels are compared pixel by pixel."""
    images = setting_images(cfg, count, device)
    crops = len(sliding_windows(*images[0].shape[-2:], cfg["crop"], cfg["stride"]))
    for seg, _ in variants.values():
        seg.crop_size, seg.stride = cfg["crop"], cfg["stride"]
    names = list(variants)
    for n in names:                                   # a first call per batch shape picks kernels: not timed
        run_group(*variants[n], images[:step], cfg["size"], device, 1 if n == "baseline" else step)
    times, labels = {n: [] for n in names}, {n: [] for n in names}
    for index, start in enumerate(range(0, count, step)):
        group = images[start:start + step]
        for n in names[index % len(names):] + names[:index % len(names)]:
            seconds, preds = run_group(*variants[n], group, cfg["size"], device, 1 if n == "baseline" else step)
            times[n] += [seconds / len(group)] * len(group)
            labels[n] += preds
            print(f"  {name} images {start}-{start + len(group) - 1}: {n:9s} {seconds / len(group):7.3f} s / image", flush=True)
    return {"images": count, "images_per_step": step, "original_hw": list(cfg["size"]), "resized_hw": list(images[0].shape[-2:]),
            "crop": cfg["crop"], "stride": cfg["stride"], "crops_per_image": crops, **setting_stats(times, peaks[name], labels)}


def peak_bytes(variant: tuple, name: str, device: torch.device) -> int:
    """Peak memory of one variant on one image of one setting, after a one-crop warm-up."""
    cfg = SETTINGS[name]
    seg, autocast = variant
    seg.crop_size, seg.stride = cfg["crop"], cfg["stride"]
    image = setting_images(cfg, 1, device)[0]
    run_once(seg, autocast, image[:, :cfg["crop"], :cfg["crop"]], (cfg["crop"], cfg["crop"]), device)
    with PeakMemory(device) as mem:
        run_once(seg, autocast, image, cfg["size"], device)
    return mem.peak_bytes


def probe(args: argparse.Namespace, device: torch.device) -> None:
    """Child process (CPU): one variant's peak resident memory, with no allocator state left by other variants."""
    variant, name = args.probe.split(":")
    print(f"PROBE {peak_bytes(build(args, device, quiet=True)[variant], name, device)}")


def peak_memory(args: argparse.Namespace, variants: dict, device: torch.device) -> dict:
    """{setting: {variant: peak bytes}}. On CUDA `max_memory_allocated` counts live tensors, whatever the allocator
    cached before, so it is measured in this process; on CPU the resident set is, so each runs in a fresh process."""
    peaks = {name: {} for name in SETTINGS}
    for name in SETTINGS:
        for variant in variants:
            if device.type == "cuda":
                peaks[name][variant] = peak_bytes(variants[variant], name, device)
            else:
                command = [sys.executable, __file__, "--probe", f"{variant}:{name}", "--device", args.device,
                           "--crop-batch-size", str(args.crop_batch_size)] + (["--threads", str(args.threads)] if args.threads else [])
                command += ["--tiny"] if args.tiny else []
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                peaks[name][variant] = int(out.rsplit("PROBE ", 1)[1])
            print(f"  peak memory {name} {variant}: {peaks[name][variant] / 2**20:.0f} MiB", flush=True)
    return peaks


def warm_up_and_estimate(variants: dict, counts: dict, device: torch.device) -> float:
    """Two one-crop calls per variant and setting: the first pays one-off setup, the second predicts the run's seconds."""
    estimate = 0.0
    for name, cfg in SETTINGS.items():
        h, w = keep_ratio_resize(fake_image(*cfg["size"], 0), *cfg["resize"]).shape[:2]
        crops = len(sliding_windows(h, w, cfg["crop"], cfg["stride"]))
        crop = torch.randint(0, 256, (3, cfg["crop"], cfg["crop"]), dtype=torch.uint8, device=device)
        for seg, autocast in variants.values():
            seg.crop_size, seg.stride = cfg["crop"], cfg["stride"]
            run_once(seg, autocast, crop, (cfg["crop"], cfg["crop"]), device)          # first call: one-off setup
            seconds = run_once(seg, autocast, crop, (cfg["crop"], cfg["crop"]), device)[0]
            estimate += seconds * crops * (counts[name] + 1.5)   # + one image in the memory probe, + DataLoader pass
    return estimate


def loader_share(variants: dict, counts: dict, device: torch.device) -> dict:
    """The fastest variant (ours_bf16) fed by a 2-worker DataLoader that decodes and resizes files."""
    seg, autocast = variants["ours_bf16"]
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, cfg in SETTINGS.items():
            paths = [Path(folder) / f"{name}_{i}{cfg['ext']}" for i in range(counts[name])]
            for i, path in enumerate(paths):
                cv2.imwrite(str(path), cv2.cvtColor(fake_image(*cfg["size"], i), cv2.COLOR_RGB2BGR))
            seg.crop_size, seg.stride = cfg["crop"], cfg["stride"]

            def run(images, cfg=cfg):
                with torch.no_grad(), autocast():
                    seg.segment_batch(images, [cfg["size"]] * len(images))

            out[name] = data_wait_share(run, paths, *cfg["resize"], device)
    return out


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        return probe(args, device)
    if args.methods is not None:
        report = measure(args.methods, args.device, *image_size(args.size), args.images, args.rounds, args.tiny)
        print(write_methods(report, args.out))
        return
    started = time.perf_counter()
    variants = build(args, device)
    counts = {"voc": args.voc, "cityscapes": args.city}
    estimate = warm_up_and_estimate(variants, counts, device)
    print(f"estimated remaining time: {estimate / 60:.1f} min (+ about 1 min to start the memory probes)", flush=True)
    peaks = peak_memory(args, variants, device)
    with OtherLoad() as load:
        settings = {name: run_setting(name, cfg, counts[name], variants, device, peaks, args.images_per_step)
                    for name, cfg in SETTINGS.items()}
    if load.share > 0.05:
        print(f"WARNING: other processes used {100 * load.share:.0f} % of the CPU meanwhile: the timings are skewed.")
    loader = loader_share(variants, counts, device)
    facts = header(args, device, load.share, time.perf_counter() - started, variants["ours_fp32"][0])
    print(write(summarise(facts, settings, loader, device), args.out))


def header(args: argparse.Namespace, device: torch.device, other_load: float, wall_s: float, ours) -> dict:
    import open_clip
    import timm

    return {"machine": machine_slug(device), "device": device.type,
            "device_name": device_name(device),
            "torch": torch.__version__, "timm": timm.__version__, "open_clip": open_clip.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(), "crop_batch_size": args.crop_batch_size,
            "images_per_step": getattr(args, "images_per_step", 1),
            "models": "tiny random CLIP + ViT (smoke run: no timings to keep)" if args.tiny else
            "CLIP ViT-B-16 + DINO ViT-B/8, random weights", "vocabulary_classes": 20,
            "baseline_precision": "fp16" if device.type == "cuda" else "fp32", "other_load_share": other_load, "wall_s": wall_s,
            **cpu_capability(), **({"fp32_linear": ours.fp32_linear, "cpu_bf16": cpu_bf16(), **onednn_kernels()} if device.type == "cpu" else {})}


if __name__ == "__main__":
    main()
