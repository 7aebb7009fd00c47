"""device_check.py's exactness checks: the environment, CUDA against the CPU, no host-device synchronisation in
`test`'s step, `main.py test`'s counts on every device and strategy, and bf16 / fp16 agreement with fp32."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from benchmarks import throughput
from benchmarks.device_inputs import REPO, build, fake_voc, main_test, voc_images
from benchmarks.measure import cpu_capability
from benchmarks.report import agreement
from proxyclip import TrainingFreeSegmentor
from proxyclip.shell.module import ProxyCLIPModule

if TYPE_CHECKING:
    from benchmarks.device_check_results import Check


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


def cli_counts(check: Check):
    gpu = check.device.type == "cuda"
    work = Path(tempfile.mkdtemp(prefix="device-check-cli-"))
    root = fake_voc(work / "data", 7, (75, 100))
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
    procs = {name: main_test(root, work / name, tiny, *extra) for name, extra in runs.items()}
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
                out[f"{name}_agreement"] = agreement(seg.segment_batch(images), ref)
    ok = all(v >= 97.0 for v in out.values())
    summary = ", ".join(f"{k.split('_')[0]} agrees with fp32 on {v:.2f} % of pixels" for k, v in out.items()) + " (target >= 97 %)"
    return ("PASS" if ok else "FAIL"), summary, out
