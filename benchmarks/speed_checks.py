"""device_check.py's speed checks: throughput against the original's way, the batch sweep, peak memory, the
end-to-end test loop with GPU utilisation, the profile, every method's cost, and torch.compile; each images/s with
its MFU (Check.mfu)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from benchmarks import method_cost, profile_loop, throughput
from benchmarks.device_inputs import CITY, VOC, build, fake_voc, main_test, real_size, voc_images
from benchmarks.measure import PeakMemory, synchronize
from benchmarks.report import methods_summary, summarise, write as write_throughput

if TYPE_CHECKING:
    from benchmarks.device_check_results import Check

END_TO_END_TARGET = {"test_loop_s": 4.6, "images_per_s": 314.0}   # 1449 VOC-like images on an H100 / H200, bf16-mixed


def run_throughput(check: Check):
    gpu = check.device.type == "cuda"
    args = argparse.Namespace(device=check.device.type, crop_batch_size=16 if gpu else 4, images_per_step=8 if gpu else 1,
                              threads=None, tiny=check.args.smoke, quick=False, out=Path(check.args.out), probe=None)
    counts = {"voc": 2 if check.args.smoke else 32, "cityscapes": 1 if check.args.smoke else 16}
    started = time.perf_counter()
    variants = throughput.build(args, check.device)
    throughput.warm_up_and_estimate(variants, counts, check.device)
    peaks = throughput.peak_memory(args, variants, check.device) if check.device.type == "cuda" else {
        name: {v: 0 for v in variants} for name in throughput.SETTINGS}      # CPU probes spawn processes: not in a smoke run
    settings = {name: throughput.run_setting(name, cfg, counts[name], variants, check.device, peaks, args.images_per_step)
                for name, cfg in throughput.SETTINGS.items()}
    loader = throughput.loader_share(variants, counts, check.device)
    header = throughput.header(args, check.device, 0.0, time.perf_counter() - started, variants["ours_fp32"][0])
    header["machine"] = check.slug + "-throughput"
    report = summarise(header, settings, loader, check.device)
    table = write_throughput(report, Path(check.args.out))
    per_setting = {name: s["speedup_bf16"] for name, s in settings.items()}
    rates = {name: s["variants"]["ours_bf16"]["images_per_s"] for name, s in settings.items()}
    mfus = {name: check.mfu(rate, name) for name, rate in rates.items()}
    ok = all(v >= 5.0 for v in per_setting.values())
    summary = (f"bf16, {args.images_per_step} images per step, vs original-like: " + ", ".join(f"{k} {v:.2f}x" for k, v in per_setting.items())
               + " (target >= 5x); ours bf16: " + ", ".join(f"{k} {rates[k]:.1f} images/s, {mfus[k][1]}" for k in rates))
    details = {"speedup_bf16": per_setting, "report_file": f"{header['machine']}.json", "table": table,
               "images_per_s_bf16": rates, "mfu_bf16": {k: m[0] for k, m in mfus.items()},
               "flops_per_image": {k: check.flops(k) for k in rates},
               **{f"speedup_{k}": {n: s[f'speedup_{k}'] for n, s in settings.items()} for k in ("fp32", "fp16") if f"speedup_{k}" in next(iter(settings.values()))}}
    status = ("PASS" if ok else "FAIL") if check.device.type == "cuda" else "INFO"
    return status, summary, details


def _images_per_s(seg, images, sizes, step: int, device, autocast) -> float:
    def once():
        for i in range(0, len(images), step):
            seg.segment_batch(images[i:i + step], sizes[i:i + step])
    with torch.no_grad(), autocast():
        once()                                                      # warm-up (kernel choice, allocator)
        synchronize(device)
        start = time.perf_counter()
        once()
        synchronize(device)
    return len(images) / (time.perf_counter() - start)


def batch_sweep(check: Check):
    device, smoke = check.device, check.args.smoke
    seg = build(check.args, device)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
    voc = voc_images(4 if smoke else 32, device)
    rows = []
    seg.crop_size, seg.stride = VOC["crop"], VOC["stride"]
    for step in ((1, 2) if smoke else (1, 4, 8, 16)):
        for crop_batch in ((4,) if smoke else (16, 32)):
            seg.crop_batch_size = crop_batch
            rate = _images_per_s(seg, voc, [VOC["size"]] * len(voc), step, device, autocast)
            rows.append({"setting": "voc", "images_per_step": step, "crop_batch_size": crop_batch, "images_per_s": rate})
    city = throughput.setting_images(CITY, 1 if smoke else 4, device)
    seg.crop_size, seg.stride = CITY["crop"], CITY["stride"]
    for crop_batch in ((4,) if smoke else (16, 32, 64)):
        seg.crop_batch_size = crop_batch
        rate = _images_per_s(seg, city, [CITY["size"]] * len(city), 1, device, autocast)
        rows.append({"setting": "cityscapes", "images_per_step": 1, "crop_batch_size": crop_batch, "images_per_s": rate})
    for r in rows:
        r["mfu"], r["mfu_text"] = check.mfu(r["images_per_s"], r["setting"])
    best = {s: max((r for r in rows if r["setting"] == s), key=lambda r: r["images_per_s"]) for s in ("voc", "cityscapes")}
    table = "\n".join(["## Images per step x crops per forward (ours, bf16)", "",
                       "| setting | images per step | crop_batch_size | images/s | MFU |", "|---|---|---|---|---|"]
                      + [f"| {r['setting']} | {r['images_per_step']} | {r['crop_batch_size']} | {r['images_per_s']:.1f} | "
                         + ("n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %") + " |" for r in rows])
    summary = "; ".join(f"{s}: best {b['images_per_s']:.1f} images/s at {b['images_per_step']} images x crop batch "
                        f"{b['crop_batch_size']} ({b['mfu_text']})" for s, b in best.items())
    return "INFO", summary, {"rows": rows, "best": best, "table": table}


def memory(check: Check):
    device = check.device
    if device.type != "cuda":
        return "INFO", "peak GPU memory is measured on CUDA only", {}
    seg = build(check.args, device)
    out = {}
    cases = {"cityscapes_2048x1024": (CITY, throughput.setting_images(CITY, 1, device), 1),
             "voc_batch_of_8": (VOC, voc_images(8, device), 8)}
    for name, (cfg, images, _) in cases.items():
        seg.crop_size, seg.stride = cfg["crop"], cfg["stride"]
        for precision_name, ctx in (("bf16", lambda: torch.autocast("cuda", dtype=torch.bfloat16)),
                                    ("fp32", lambda: torch.autocast("cuda", enabled=False))):
            with torch.no_grad(), ctx():
                seg.segment_batch(images[:1], [cfg["size"]])             # warm-up
                with PeakMemory(device) as mem:
                    seg.segment_batch(images, [cfg["size"]] * len(images))
            out[f"{name}_{precision_name}_gb"] = mem.peak_bytes / 2**30
    ok = all(v < 8.0 for v in out.values())
    summary = ", ".join(f"{k[:-3]} {v:.2f} GB" for k, v in out.items()) + f" (crop_batch_size {seg.crop_batch_size}; target < 8 GB)"
    return ("PASS" if ok else "FAIL"), summary, out


class GPUSampler:
    """nvidia-smi's utilisation every 100 ms, with timestamps, in a background thread."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        smi = shutil.which("nvidia-smi")
        self.proc = subprocess.Popen([smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"],
                                     stdout=subprocess.PIPE, text=True) if smi else None
        if self.proc:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.samples.append((time.time(), float(line.strip())))
            except ValueError:
                pass

    def stop(self):
        if self.proc:
            self.proc.terminate()

    def mean_between(self, start: float, end: float) -> float | None:
        values = [u for t, u in self.samples if start <= t <= end]
        return statistics.mean(values) if values else None


def end_to_end(check: Check):
    smoke, gpu = check.args.smoke, check.device.type == "cuda"
    work = Path(tempfile.mkdtemp(prefix="device-check-e2e-"))
    start = time.perf_counter()
    count = 12 if smoke else 1449
    workers = max(1, min(16, os.cpu_count() or 1)) if count > 100 else 1     # a spawned pool costs more than 12 images
    root = fake_voc(work / "data", count, (375, 500), workers=workers)
    write_s = time.perf_counter() - start
    model = work / "model.yaml"
    spec = real_size(check.args)
    model.write_text("segmentor:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in spec.items()))
    # the defaults a user gets: images per step, workers, pinned memory and crops per forward are chosen for the device
    extra = ["--trainer.accelerator", "gpu" if gpu else "cpu", "--trainer.devices", "1"]
    if gpu:
        extra += ["--trainer.precision", "bf16-mixed"]
    sampler = GPUSampler() if gpu else None
    started = time.perf_counter()
    proc = main_test(root, work / "out", model, *extra)
    log = proc.communicate(timeout=900)[0]
    wall = time.perf_counter() - started
    if sampler:
        sampler.stop()
    if proc.returncode != 0:
        return "FAIL", f"main.py test exited {proc.returncode}", {"log": log[-4000:]}
    report = json.loads((work / "out" / "metrics.json").read_text())
    timing = report["timing"]
    util = sampler.mean_between(timing["started_at"], timing["started_at"] + timing["test_loop_s"]) if sampler else None
    mfu, mfu_text = check.mfu(timing["images_per_s"], "voc")
    details = {"images": report["num_images"], "write_dataset_s": write_s, "process_wall_s": wall, **timing,
               "gpu_utilisation_percent": util, "command_extra": extra, "mfu": mfu, "flops_per_image": check.flops("voc"),
               "target": END_TO_END_TARGET}
    shutil.rmtree(work, ignore_errors=True)
    summary = (f"{report['num_images']} images: test loop {timing['test_loop_s']:.1f} s ({timing['images_per_s']:.0f} images/s, "
               f"{mfu_text}), waiting for data {100 * timing['data_wait_share']:.1f} %, text encoding "
               f"{timing['text_encoding_s']:.1f} s, whole process {wall:.0f} s" + (f", GPU utilisation {util:.0f} %" if util is not None else "")
               + (f" (target: loop <= {END_TO_END_TARGET['test_loop_s']} s, >= {END_TO_END_TARGET['images_per_s']:.0f} images/s)" if gpu else ""))
    met = timing["test_loop_s"] <= END_TO_END_TARGET["test_loop_s"] and timing["images_per_s"] >= END_TO_END_TARGET["images_per_s"]
    status = ("PASS" if met else "FAIL") if gpu else "INFO"
    return status, summary, details


def profile(check: Check):
    """benchmarks/profile_loop.py on the bf16 loop: 8 VOC-like images per step, 3 steps (smoke: 1 image, 1 step)."""
    smoke, out = check.args.smoke, Path(check.args.out)
    seg = build(check.args, check.device)
    seg.crop_size, seg.stride = VOC["crop"], VOC["stride"]
    count = 1 if smoke else 8
    trace = None if smoke else out / f"{check.slug}-profile.trace.json"      # tens of MB: beside the results, not in git
    report = profile_loop.profile_steps(seg, voc_images(count, check.device), [VOC["size"]] * count, check.device,
                                        steps=1 if smoke else 3, warm_up=1 if smoke else 2, trace=trace)
    table = profile_loop.write(report, out, check.slug)
    return "INFO", profile_loop.summary_line(report), {**report, "table": table, "report_file": f"{check.slug}-profile.json"}


def methods(check: Check):
    """Every shipped preset but tiny_*.yaml through method_cost.measure (`main.py test` per preset in its own process,
    Cityscapes-like images, bf16-mixed on a GPU), within what is left of the budget: the nine methods' ViT-B/16 presets
    first, then the other backbones and VFMs; presets that would overrun it are listed as skipped. Smoke: ProxyCLIP
    and SCLIP with tiny models on 128x64 images. MFU for ProxyCLIP's row (the model `throughput` counts); the other
    methods' FLOPs are not counted here."""
    smoke = check.args.smoke
    width, height = (128, 64) if smoke else (2048, 1024)
    report = method_cost.measure(method_cost.presets_by_importance(smoke), check.device.type, width, height,
                                 images=1 if smoke else 8, rounds=1, tiny=smoke, budget_s=max(check.left(), 0.0),
                                 precision="bf16-mixed" if check.device.type == "cuda" else None)
    report["machine"] = check.slug
    base = report["presets"][method_cost.BASELINE]
    if not smoke and "images_per_s" in base:
        base["mfu"], base["mfu_text"] = check.mfu(base["images_per_s"], "cityscapes")
    table = method_cost.write_methods(report, Path(check.args.out))
    failed = any("error" in row for row in report["presets"].values())
    return ("FAIL" if failed else "INFO"), methods_summary(report), {
        "presets": report["presets"], "table": table, "report_file": f"{check.slug}-methods.json"}


def compile_benefit(check: Check):
    device = check.device
    if device.type != "cuda":
        return "INFO", "measured on CUDA only", {}
    images = voc_images(16, device)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16))
    eager = build(check.args, device)
    eager_rate = _images_per_s(eager, images, [VOC["size"]] * 16, 8, device, autocast)
    del eager
    compiled = build(check.args, device, compile=True)
    start = time.perf_counter()
    with torch.no_grad(), autocast():
        compiled.segment_batch(images[:8], [VOC["size"]] * 8)
        synchronize(device)
    compile_s = time.perf_counter() - start
    rate = _images_per_s(compiled, images, [VOC["size"]] * 16, 8, device, autocast)
    return "INFO", (f"compile {compile_s:.0f} s; steady {rate:.1f} images/s against eager {eager_rate:.1f} "
                    f"({rate / eager_rate:.2f}x), VOC-like, 8 images per step, bf16"), \
        {"compile_s": compile_s, "compiled_images_per_s": rate, "eager_images_per_s": eager_rate}
