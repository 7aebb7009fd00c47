"""The GPU path checked and measured in one call, for a GPU that is lent for minutes.

    python benchmarks/device_check.py                          # a CUDA machine: ~8-9 min on one H100 (--budget-s 480)
    python benchmarks/device_check.py --device cpu --smoke     # tiny sizes on a CPU: checks this script (CI)
    python benchmarks/device_check.py --only methods profile   # some checks alone: <gpu>-methods-profile.json / .md

One PASS / FAIL / INFO / SKIP line per check as it runs; results in <out>/<gpu>.json and .md (default
benchmarks/results/; a smoke run measures nothing worth keeping, so its default is a new temporary folder, named on
its first and last lines), rewritten after every check, so that a run cut short keeps what it measured. In order
of importance (a check that would overrun `--budget-s` is skipped, and says so):
  environment        torch, CUDA, the card, the CPU
  cuda_equals_cpu    tiny models, then CLIP ViT-B/16 + DINO ViT-B/8 at full size (random weights, 336 crops): fp32 features
                     on the device equal the CPU's to 1e-4, labels identical (pixels whose top two classes tie within
                     1e-4 are reported, not failed: random weights make near-ties)
  no_host_sync       test's own step (crops, encoders, decision, NaN masks, metric) runs under
                     torch.cuda.set_sync_debug_mode("error")
  cli_counts         `main.py test` on a fake VOC layout: CPU, GPU, GPU through DDP/NCCL (1 process) give the same counts;
                     bf16-mixed and 16-mixed run
  precision          bf16 and fp16 autocast labels agree with fp32 on >= 97 % of pixels (full size)
  throughput         benchmarks/throughput.py: the original's way (pure fp16, one crop per forward, explicit attention,
                     empty_cache after each crop) against ours (batched crops, fused attention, fp32/bf16/fp16); >= 5x
  batch_sweep        images per step x crops per forward (bf16): what fills the card
  memory             peak max_memory_allocated: one 2048x1024 Cityscapes image, a batch of 8 VOC images; < 8 GB
  end_to_end         1449 fake 500x375 JPEGs in the VOC layout through `main.py test` (bf16, real-size random weights):
                     test loop <= 4.6 s and >= 314 images/s (END_TO_END_TARGET), GPU utilisation, data waiting
  profile            benchmarks/profile_loop.py: torch.profiler over 3 steps of 8 VOC-like images (bf16): top kernels,
                     GEMM / attention / elementwise / memcpy shares, device busy against wall, kernels per image (INFO);
                     results/<gpu>-profile.json / .md, and the Chrome trace <gpu>-profile.trace.json beside (not in git)
  methods            every shipped preset but tiny_random through method_cost.measure (`main.py test`, 8 Cityscapes-like
                     images, bf16-mixed, one process each; the nine ViT-B/16 methods first), images/s, peak memory,
                     ratios to ProxyCLIP, until the budget is spent (the rest listed as skipped); results/<gpu>-methods.*
  compile            torch.compile on the GPU: compile time and steady speed against eager (INFO)
MFU (benchmarks/flops.py): the model's matmul / conv / attention FLOPs per image are counted once per setting
(results' `flops_per_image`) and every images/s of the throughput, batch_sweep, end_to_end and methods (ProxyCLIP's
row) checks is given with its MFU: bf16 FLOP/s over the card's dense bf16 peak (on a card not in flops.PEAK_TFLOPS,
and on a CPU, the FLOP/s reached instead).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import multiprocessing
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from benchmarks import flops, method_cost, profile_loop, throughput  # noqa: E402
from benchmarks.measure import PeakMemory, cpu_capability, device_name, fake_image, machine_slug  # noqa: E402
from benchmarks.report import methods_summary, summarise, write as write_throughput  # noqa: E402
from proxyclip import TrainingFreeSegmentor  # noqa: E402
from proxyclip.shell.module import ProxyCLIPModule  # noqa: E402

VOC = throughput.SETTINGS["voc"]
CITY = throughput.SETTINGS["cityscapes"]
END_TO_END_TARGET = {"test_loop_s": 4.6, "images_per_s": 314.0}   # 1449 VOC-like images on an H100 / H200, bf16-mixed


class Check:
    """The run's results: each check appends its record and the files are rewritten at once."""

    def __init__(self, args: argparse.Namespace, device: torch.device):
        self.args, self.device, self.start = args, device, time.perf_counter()
        # a run of some checks alone (--only) names its files apart: it does not overwrite a whole run's
        self.slug = machine_slug(device) + ("-smoke" if args.smoke else "") + "".join(f"-{n}" for n in args.only or ())
        self.results: dict = {"device": device_name(device), "smoke": args.smoke, "checks": {}, "flops_per_image": {}}

    def flops(self, setting: str) -> float:
        """FLOPs per image of the setting (benchmarks/flops.py), counted once per run on this device, under bf16."""
        counted = self.results["flops_per_image"]
        if setting not in counted:
            cfg = throughput.SETTINGS[setting]
            seg = build(self.args, self.device)
            seg.crop_size, seg.stride = cfg["crop"], cfg["stride"]
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                counted[setting] = flops.flops_per_image(seg, throughput.setting_images(cfg, 1, self.device), [cfg["size"]])
        return counted[setting]

    def mfu(self, images_per_s: float, setting: str) -> tuple[float | None, str]:
        """(MFU of a bf16 run of the setting, or None on an unknown card or a CPU; its words for a summary line)."""
        name, per_image = device_name(self.device), self.flops(setting)
        return flops.mfu(images_per_s, per_image, name, "bf16"), flops.mfu_text(images_per_s, per_image, name, "bf16")

    def left(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.start)

    def run(self, name: str, fn, estimate_s: float = 0.0) -> None:
        if self.left() < estimate_s:
            self.record(name, "SKIP", f"needs ~{estimate_s:.0f} s, {self.left():.0f} s of the budget left")
            return
        began = time.perf_counter()
        try:
            status, summary, details = fn(self)
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            status, summary, details = "FAIL", f"{type(exc).__name__}: {exc}", {"traceback": traceback.format_exc()}
        self.record(name, status, summary, details, time.perf_counter() - began)

    def record(self, name: str, status: str, summary: str, details: dict | None = None, seconds: float = 0.0) -> None:
        self.results["checks"][name] = {"status": status, "summary": summary, "seconds": seconds, **(details or {})}
        print(f"{status:4s} {name}: {summary}", flush=True)
        self.write()

    def write(self) -> None:
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{self.slug}.json").write_text(json.dumps(self.results, indent=2, default=str) + "\n")
        lines = [f"# Device check on {self.results['device']}" + (" (smoke run: tiny models, no figures to keep)" if self.args.smoke else ""),
                 "", "`python benchmarks/device_check.py" + (" --device cpu --smoke" if self.args.smoke else "") + "`", "",
                 "| check | status | result | seconds |", "|---|---|---|---|"]
        for name, c in self.results["checks"].items():
            lines.append(f"| {name} | {c['status']} | {c['summary'].replace('|', '/')} | {c['seconds']:.0f} |")
        tables = [c["table"] for c in self.results["checks"].values() if c.get("table")]
        (out / f"{self.slug}.md").write_text("\n".join(lines + [""] + tables) + "\n")


# --------------------------------------------------------------------------- models and inputs

def real_size(args) -> dict:
    return throughput.TINY_MODEL if args.smoke else throughput.REAL_SIZE_MODEL


def build(args, device, crop_batch_size: int = 16, **kwargs) -> TrainingFreeSegmentor:
    torch.manual_seed(0)
    spec = {**real_size(args), **kwargs}
    return TrainingFreeSegmentor(**spec, crop_batch_size=crop_batch_size, class_names=throughput.vocabulary()).eval().to(device)


def voc_images(count: int, device) -> list[torch.Tensor]:
    return throughput.setting_images(VOC, count, torch.device(device))


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def labels_agreement(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return 100.0 * sum(int((x.cpu() == y.cpu()).sum()) for x, y in zip(a, b)) / sum(y.numel() for y in b)


# --------------------------------------------------------------------------- checks

def environment(check: Check):
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "cpus": os.cpu_count(), **cpu_capability()}
    if check.device.type == "cuda":
        props = torch.cuda.get_device_properties(check.device)
        info.update(gpu=props.name, gpu_memory_gb=props.total_memory / 2**30, multiprocessors=props.multi_processor_count)
        smi = shutil.which("nvidia-smi")
        if smi:
            info["nvidia_smi"] = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                                 "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    summary = ", ".join(f"{k} {v}" for k, v in info.items() if k in ("gpu", "torch", "cuda", "torch_cpu_capability", "cpus"))
    return "INFO", summary, info


def _compare(cpu_seg, dev_seg, crops: torch.Tensor, images: list[torch.Tensor], device) -> dict:
    with torch.no_grad():
        ref = cpu_seg.dense_features(crops)
        ours = dev_seg.dense_features(crops.to(device)).cpu()
        ref_logits = cpu_seg(images)
        dev_logits = dev_seg([im.to(device) for im in images])
    probs = [cpu_seg.class_probabilities(lg) for lg in ref_logits]
    ref_labels = [cpu_seg.decide(p) for p in probs]
    dev_labels = [dev_seg.decide(dev_seg.class_probabilities(lg)).cpu() for lg in dev_logits]
    top2 = [p.topk(2, dim=0).values for p in probs]
    decided = [(t[0] - t[1]) > 1e-4 for t in top2]                 # not a tie within fp32 rounding
    differ = sum(int((a != b).sum()) for a, b in zip(ref_labels, dev_labels))
    differ_decided = sum(int(((a != b) & d).sum()) for a, b, d in zip(ref_labels, dev_labels, decided))
    logit_diff = max(float((a - b.cpu()).abs().max()) for a, b in zip(ref_logits, dev_logits))
    return {"feature_max_abs_diff": float((ref - ours).abs().max()), "logit_max_abs_diff": logit_diff,
            "pixels": sum(x.numel() for x in ref_labels), "pixels_differ": differ, "pixels_differ_not_tied": differ_decided}


def cuda_equals_cpu(check: Check):
    args, device = check.args, check.device
    out = {}
    cases = {"tiny": (throughput.TINY_MODEL, 112, 3)}
    if not args.smoke:
        cases["real_size"] = (throughput.REAL_SIZE_MODEL, 336, 2)
    for name, (spec, crop, count) in cases.items():
        torch.manual_seed(0)
        start = time.perf_counter()
        cpu_seg = TrainingFreeSegmentor(**spec, crop_size=crop, class_names=throughput.vocabulary()).eval()
        out[f"{name}_build_s"] = time.perf_counter() - start
        cpu_seg.text_embeddings()
        dev_seg = _copy_to(cpu_seg, device)
        crops = torch.rand(2, 3, crop, crop, generator=torch.Generator().manual_seed(1))
        images = [im.cpu() for im in voc_images(count, "cpu")]
        out[name] = _compare(cpu_seg, dev_seg, crops, images, device)
        del cpu_seg, dev_seg
    ok = all(r["feature_max_abs_diff"] <= 1e-4 and r["pixels_differ_not_tied"] == 0 for k, r in out.items() if isinstance(r, dict))
    summary = "; ".join(f"{k}: features {r['feature_max_abs_diff']:.1e}, labels differ on {r['pixels_differ']} of {r['pixels']} "
                        f"pixels ({r['pixels_differ_not_tied']} outside ties)" for k, r in out.items() if isinstance(r, dict))
    return ("PASS" if ok else "FAIL"), summary, out


def _copy_to(seg: TrainingFreeSegmentor, device) -> TrainingFreeSegmentor:
    import copy

    return copy.deepcopy(seg).to(device)


def no_host_sync(check: Check):
    """`test`'s own step (ProxyCLIPModule.test_step: the segmentor's labels_and_nan_masks, then the metric's update)
    under torch.cuda.set_sync_debug_mode("error"), fp32 and bf16. On a CPU (the smoke run) it runs once, unwatched."""
    module = ProxyCLIPModule(build(check.args, check.device)).to(check.device)
    images = voc_images(2, check.device)
    batch = {"images": images, "labels": [torch.randint(0, 20, im.shape[-2:], device=check.device) for im in images]}
    if check.device.type != "cuda":
        with torch.no_grad():
            module.test_step(batch, 0)
        return "INFO", "test's step ran; host-device synchronisation is checked on CUDA only", {}
    modes = {"fp32": lambda: torch.autocast("cuda", enabled=False), "bf16": lambda: torch.autocast("cuda", dtype=torch.bfloat16)}
    for mode, ctx in modes.items():
        with torch.no_grad(), ctx():
            module.test_step(batch, 0)                             # warm-up: text embeddings, kernel choices
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                module.test_step(batch, 0)
            except RuntimeError as exc:
                return "FAIL", f"{mode}: {str(exc).splitlines()[0]}", {"traceback": traceback.format_exc()}
            finally:
                torch.cuda.set_sync_debug_mode("default")
    return "PASS", "test's step (labels, NaN masks, metric update; fp32 and bf16) ran with no host-device synchronisation", {}


def _fake_voc(root: Path, count: int, size: tuple[int, int], workers: int = 1) -> Path:
    """`count` JPEGs of `size` (H, W) and palette labels (0..20, 255) in the VOC2012 layout."""
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"2007_{i:06d}" for i in range(count)]
    jobs = [(voc, sid, size, i) for i, sid in enumerate(ids)]
    if workers > 1:
        # spawn, not fork: a forked child of a process whose OpenMP pool already ran can hang in its first kernel
        with multiprocessing.get_context("spawn").Pool(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            pool.map(_write_pair, jobs, chunksize=16)
    else:
        for job in jobs:
            _write_pair(job)
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids) + "\n")
    return voc


def _write_pair(job) -> None:
    from PIL import Image

    voc, sid, (h, w), seed = job
    Image.fromarray(fake_image(h, w, seed)).save(voc / "JPEGImages" / f"{sid}.jpg", quality=90)
    label = np.random.default_rng(seed).integers(0, 21, (h // 25 + 1, w // 25 + 1)).astype(np.uint8)
    label = np.kron(label, np.ones((25, 25), np.uint8))[:h, :w]
    label[:3] = 255
    Image.fromarray(label, mode="L").save(voc / "SegmentationClass" / f"{sid}.png")


def _main_test(root: Path, out: Path, model: Path | str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "main.py"), "test", "--config", str(REPO / "configs/voc21.yaml"), "--model", str(model),
           "--data.init_args.root", str(root), "--model.output_dir", str(out), "--trainer.logger", "false",
           "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def cli_counts(check: Check):
    gpu = check.device.type == "cuda"
    work = Path(tempfile.mkdtemp(prefix="device-check-cli-"))
    root = _fake_voc(work / "data", 7, (75, 100))
    tiny = REPO / "configs/model/tiny_random.yaml"
    runs = {"cpu": ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]}
    if gpu:
        runs.update({
            "gpu": ["--trainer.accelerator", "gpu", "--trainer.devices", "1"],
            "gpu_ddp_nccl": ["--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.strategy", "ddp"],
            "gpu_bf16_mixed": ["--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.precision", "bf16-mixed"],
            "gpu_16_mixed": ["--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.precision", "16-mixed"],
        })
    else:
        runs["cpu_ddp_gloo"] = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "ddp"]
    procs = {name: _main_test(root, work / name, tiny, *extra) for name, extra in runs.items()}
    reports, logs = {}, {}
    for name, proc in procs.items():
        logs[name] = proc.communicate(timeout=600)[0]
        if proc.returncode == 0:
            reports[name] = json.loads((work / name / "metrics.json").read_text())
    failed = [n for n in runs if n not in reports]
    exact = [n for n in reports if "mixed" not in n]
    same = all(reports[n]["counts"] == reports["cpu"]["counts"] for n in exact if "cpu" in reports)
    mixed_ok = all(sum(reports[n]["counts"]["label"]) == sum(reports["cpu"]["counts"]["label"]) for n in reports if "mixed" in n)
    details = {"runs": list(runs), "failed": {n: logs[n][-3000:] for n in failed},
               "counts": {n: r["counts"] for n, r in reports.items()}, "mIoU": {n: r["mIoU"] for n, r in reports.items()}}
    ok = not failed and same and mixed_ok and "cpu" in reports
    summary = (f"{', '.join(exact)}: {'identical counts' if same else 'COUNTS DIFFER'}"
               + (f"; mixed precision runs: {', '.join(n for n in reports if 'mixed' in n)}" if gpu else "")
               + (f"; failed: {', '.join(failed)}" if failed else ""))
    shutil.rmtree(work, ignore_errors=True)
    return ("PASS" if ok else "FAIL"), summary, details


def precision(check: Check):
    if check.device.type != "cuda" and not check.args.smoke:
        return "INFO", "GPU only", {}
    seg = build(check.args, check.device)
    images = voc_images(2 if check.args.smoke else 4, check.device)
    out = {}
    with torch.no_grad():
        ref = seg.segment_batch(images)
        for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            if check.device.type == "cpu" and dtype == torch.float16:
                continue
            with torch.autocast(check.device.type, dtype=dtype):
                out[f"{name}_agreement"] = labels_agreement(seg.segment_batch(images), ref)
    ok = all(v >= 97.0 for v in out.values())
    summary = ", ".join(f"{k.split('_')[0]} agrees with fp32 on {v:.2f} % of pixels" for k, v in out.items()) + " (target >= 97 %)"
    return ("PASS" if ok else "FAIL"), summary, out


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
        sync(device)
        start = time.perf_counter()
        once()
        sync(device)
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
    root = _fake_voc(work / "data", count, (375, 500), workers=workers)
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
    proc = _main_test(root, work / "out", model, *extra)
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
    """Every shipped preset but tiny_random through method_cost.measure (`main.py test` per preset in its own process,
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
        sync(device)
    compile_s = time.perf_counter() - start
    rate = _images_per_s(compiled, images, [VOC["size"]] * 16, 8, device, autocast)
    return "INFO", (f"compile {compile_s:.0f} s; steady {rate:.1f} images/s against eager {eager_rate:.1f} "
                    f"({rate / eager_rate:.2f}x), VOC-like, 8 images per step, bf16"), \
        {"compile_s": compile_s, "compiled_images_per_s": rate, "eager_images_per_s": eager_rate}


# in order of importance: (name, check, seconds it needs at least on one H100)
CHECKS = (("environment", environment, 0), ("cuda_equals_cpu", cuda_equals_cpu, 30), ("no_host_sync", no_host_sync, 10),
          ("cli_counts", cli_counts, 40), ("precision", precision, 10), ("throughput", run_throughput, 60),
          ("memory", memory, 15), ("batch_sweep", batch_sweep, 30), ("end_to_end", end_to_end, 60),
          ("profile", profile, 20), ("methods", methods, 60), ("compile", compile_benefit, 90))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--smoke", action="store_true", help="tiny models and inputs: checks the script, measures nothing")
    parser.add_argument("--out", default=None, help="folder for <machine>.json and .md (default: benchmarks/results/ of "
                                                    "the checkout; with --smoke, a new temporary folder)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="skip checks that would end after this many seconds")
    parser.add_argument("--only", nargs="+", choices=[name for name, _, _ in CHECKS], metavar="CHECK",
                        help="run these checks alone (environment always runs), e.g. a rerun of `methods` in a short lease")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device is visible to torch; run with --device cpu --smoke to check the script on a CPU.",
              file=sys.stderr)
        return 2
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="device-check-smoke-") if args.smoke else str(REPO / "benchmarks" / "results")
    print(f"results go to {args.out}/", flush=True)
    os.environ.setdefault("PROXYCLIP_CACHE_DIR", tempfile.mkdtemp(prefix="device-check-cache-"))
    device = torch.device(args.device)
    check = Check(args, device)
    for name, fn, estimate_s in CHECKS:
        if args.only is None or name in args.only or name == "environment":
            check.run(name, fn, estimate_s)
    statuses = [c["status"] for c in check.results["checks"].values()]
    print(f"device check: {statuses.count('PASS')} PASS, {statuses.count('FAIL')} FAIL, {statuses.count('SKIP')} SKIP, "
          f"{statuses.count('INFO')} INFO in {time.perf_counter() - check.start:.0f} s; results in {args.out}/{check.slug}.json/.md")
    return 1 if "FAIL" in statuses else 0


if __name__ == "__main__":
    raise SystemExit(main())
