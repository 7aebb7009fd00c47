"""Where the test loop's time goes: torch.profiler over a few steps of the bf16 loop that `main.py test` runs.

    python benchmarks/profile_loop.py --device cuda            # CLIP ViT-B/16 + DINO ViT-B/8, random weights
    python benchmarks/profile_loop.py --device cpu --smoke     # tiny models, CPU activities only: checks the script

Each step is one `segment_batch` call on `--images` VOC-like images (500x375 resized to 448x336: 2 crops of 336
each; the DataModule's 8 per step on a GPU) under bf16 autocast, after `--warm-up` untimed steps. Writes
<out>/<machine>-profile.md and .json (and, with --trace, <machine>-profile.trace.json for chrome://tracing or
Perfetto; large, kept out of git):
- the top kernels by self device time (on a CPU: the top aten ops by self CPU time): name, calls, total ms, share;
- that time grouped into GEMM / attention / elementwise and norm / memcpy / other (by kernel name, GROUPS below);
- device busy time (the union of the kernels' intervals) against the steps' wall time: the rest is the GPU idle,
  waiting for the host to launch work (launch-bound) or for a synchronisation;
- host-side aten ops and device kernels per image: what each image costs the Python / dispatcher side.
The profiler adds its own overhead to the wall time: compare shares, not these seconds with throughput's.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import throughput  # noqa: E402
from benchmarks.measure import device_name, machine_slug, synchronize  # noqa: E402

# first match wins, on the lower-cased kernel (or aten op) name; nvjet / xmma / cutlass: cuBLAS's and CUTLASS's GEMMs
GROUPS = (
    ("attention", r"flash|fmha|attention|sdpa|softmax"),
    ("GEMM", r"gemm|nvjet|xmma|cutlass|cublas|aten::(add)?mm$|aten::bmm|aten::baddbmm|aten::linear|_linear_pointwise|conv"),
    ("memcpy", r"memcpy|memset|copy"),
    ("elementwise and norm", r"elementwise|vectorized|unrolled|norm|gelu|reduce|aten::(add|mul|div|sub|where|clamp|exp|"
                             r"cat|index|gather|fill|upsample|interpolate|max|sum|mean|softmax|to|_to_copy)|triton|upsample|cat"),
)


def group_of(name: str) -> str:
    lower = name.lower()
    return next((group for group, pattern in GROUPS if re.search(pattern, lower)), "other")


def busy_us(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals (kernels on several streams may overlap)."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def profile_steps(seg, images: list[torch.Tensor], sizes: list[tuple[int, int]], device: torch.device, steps: int = 3,
                  warm_up: int = 2, top: int = 25, trace: Path | None = None) -> dict:
    """Profile `steps` segment_batch(images) calls under bf16 autocast after `warm_up` unprofiled ones."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])

    def step():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            seg.segment_batch(images, sizes)

    for _ in range(warm_up):
        step()
    synchronize(device)
    with profile(activities=activities) as prof:
        began = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        wall_us = (time.perf_counter() - began) * 1e6
    if trace is not None:
        prof.export_chrome_trace(str(trace))
    events = prof.events()
    kernels = [e for e in events if e.device_type == DeviceType.CUDA] if cuda else []
    per_name: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    if cuda:                                   # device kernels, memcpys and memsets with their own intervals
        for e in kernels:
            per_name[e.name][0] += 1
            per_name[e.name][1] += e.time_range.elapsed_us()
    else:                                      # aten ops by self CPU time (a CPU has no kernel timeline)
        for e in prof.key_averages():
            per_name[e.key] = [e.count, e.self_cpu_time_total]
    measured_us = sum(us for _, us in per_name.values()) or 1.0
    rows = sorted(({"name": name, "calls": calls, "total_ms": us / 1e3, "share": us / measured_us, "group": group_of(name)}
                   for name, (calls, us) in per_name.items()), key=lambda r: -r["total_ms"])
    groups: dict[str, float] = defaultdict(float)
    for r in rows:
        groups[r["group"]] += r["total_ms"]
    count = steps * len(images)
    busy = busy_us([(e.time_range.start, e.time_range.end) for e in kernels]) if cuda else None
    host_ops = sum(1 for e in events if e.device_type == DeviceType.CPU and e.name.startswith("aten::"))
    return {"device_name": device_name(device), "device": device.type, "precision": "bf16 autocast", "steps": steps,
            "images_per_step": len(images), "warm_up_steps": warm_up, "wall_ms": wall_us / 1e3,
            "measured": "self device time of kernels" if cuda else "self CPU time of aten ops",
            "measured_ms": measured_us / 1e3, "groups_ms": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
            "device_busy_ms": None if busy is None else busy / 1e3,
            "device_busy_share": None if busy is None else busy / wall_us,
            "host_aten_ops_per_image": host_ops / count, "device_kernels_per_image": len(kernels) / count if cuda else None,
            "top": rows[:top], "trace_file": str(trace) if trace is not None else None}


def write(report: dict, out: Path, slug: str) -> str:
    """<out>/<slug>-profile.json and .md; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{slug}-profile.json").write_text(json.dumps(report, indent=2) + "\n")
    r = report
    lines = [f"## Profile of the test loop on {r['device_name']} ({r['precision']})", "",
             f"{r['steps']} steps of {r['images_per_step']} VOC-like images (segment_batch), after {r['warm_up_steps']} "
             f"warm-up steps; wall {r['wall_ms']:.1f} ms under the profiler; {r['measured']}: {r['measured_ms']:.1f} ms.", ""]
    if r["device_busy_share"] is not None:
        lines.append(f"Device busy {r['device_busy_ms']:.1f} ms of {r['wall_ms']:.1f} ms ({100 * r['device_busy_share']:.1f} %): "
                     f"the rest the GPU waits for launches or synchronisations. {r['device_kernels_per_image']:.0f} kernels "
                     f"and {r['host_aten_ops_per_image']:.0f} host aten ops per image.")
    else:
        lines.append(f"{r['host_aten_ops_per_image']:.0f} host aten ops per image (no device timeline on a CPU).")
    lines += ["", "| group | ms | share |", "|---|---:|---:|"]
    lines += [f"| {g} | {ms:.2f} | {100 * ms / max(r['measured_ms'], 1e-9):.1f} % |" for g, ms in r["groups_ms"].items()]
    lines += ["", "| kernel | group | calls | total ms | share |", "|---|---|---:|---:|---:|"]
    lines += [f"| `{row['name'][:90].replace('|', '/')}` | {row['group']} | {row['calls']} | {row['total_ms']:.2f} | "
              f"{100 * row['share']:.1f} % |" for row in r["top"]]
    if r["trace_file"]:
        lines += ["", f"Chrome trace: `{Path(r['trace_file']).name}` (beside this file, not in git)."]
    text = "\n".join(lines) + "\n"
    (out / f"{slug}-profile.md").write_text(text)
    return text


def summary_line(report: dict) -> str:
    """One line: the groups' shares, the device's busy share, host ops per image, the top kernel."""
    shares = ", ".join(f"{g} {100 * ms / max(report['measured_ms'], 1e-9):.0f} %" for g, ms in report["groups_ms"].items())
    busy = ("" if report["device_busy_share"] is None else f"device busy {100 * report['device_busy_share']:.0f} % of the "
            f"wall, {report['device_kernels_per_image']:.0f} kernels per image, ")
    return (f"{report['measured']}: {shares}; {busy}{report['host_aten_ops_per_image']:.0f} host aten ops per image; "
            f"top: {report['top'][0]['name'][:60]}" + (f"; trace {report['trace_file']}" if report["trace_file"] else ""))


def voc_inputs(device: torch.device, count: int) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    voc = throughput.SETTINGS["voc"]
    return throughput.setting_images(voc, count, device), [voc["size"]] * count


def build(device: torch.device, smoke: bool) -> torch.nn.Module:
    """ProxyCLIP at full size with random weights (or the tiny models), VOC's crop and stride, crops batched by 16."""
    from proxyclip import TrainingFreeSegmentor

    torch.manual_seed(0)
    voc = throughput.SETTINGS["voc"]
    return TrainingFreeSegmentor(**(throughput.TINY_MODEL if smoke else throughput.REAL_SIZE_MODEL), crop_size=voc["crop"],
                                 stride=voc["stride"], crop_batch_size=16, class_names=throughput.vocabulary()).eval().to(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--smoke", action="store_true", help="tiny models: checks the script, measures nothing")
    parser.add_argument("--images", type=int, default=8, help="VOC-like images per step (default 8, the GPU's batch)")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (default 3)")
    parser.add_argument("--warm-up", type=int, default=2, help="unprofiled steps first (default 2)")
    parser.add_argument("--trace", action="store_true", help="also write <machine>-profile.trace.json (Chrome trace)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device is visible to torch; use --device cpu --smoke to check the script")
    if min(args.images, args.steps) < 1 or args.warm_up < 0:
        parser.error("--images and --steps must be at least 1, --warm-up at least 0")
    device = torch.device(args.device)
    slug = machine_slug(device) + ("-smoke" if args.smoke else "")
    images, sizes = voc_inputs(device, args.images)
    report = profile_steps(build(device, args.smoke), images, sizes, device, args.steps, args.warm_up,
                           trace=args.out / f"{slug}-profile.trace.json" if args.trace else None)
    print(write(report, args.out, slug))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
