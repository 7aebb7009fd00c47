"""Summaries of benchmarks/throughput.py: per-setting statistics, the JSON report and its Markdown table; the
per-method report of method_cost.py (throughput.py --methods)."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import torch

TARGETS = {"cpu": {"speedup_fp32": 1.5, "speedup_bf16": 2.0}, "cuda": {"speedup_bf16": 5.0, "cityscapes_bf16_peak_gb": 8.0}}


def speedup_key(variant: str) -> str:
    """ours_fp32 -> speedup_fp32, ours_fp32_torch_linear -> speedup_fp32_torch_linear."""
    return f"speedup_{variant.removeprefix('ours_')}"


def agreement(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Percentage of pixels with the same label."""
    return 100.0 * sum(int((x == y).sum()) for x, y in zip(a, b)) / sum(y.numel() for y in b)


def setting_stats(times: dict[str, list[float]], peaks: dict[str, int], labels: dict[str, list[torch.Tensor]]) -> dict:
    """Per variant: seconds per image, images/s from the median (robust to a busy neighbour) and from the mean,
    peak memory; speedups against the baseline are ratios of medians (`*_mean`: of totals)."""
    out = {"variants": {}}
    for name, seconds in times.items():
        median = statistics.median(seconds)
        out["variants"][name] = {"seconds": seconds, "median_s": median, "images_per_s": 1 / median,
                                 "images_per_s_mean": len(seconds) / sum(seconds), "peak_mem_mb": peaks[name] / 2**20}
    base = out["variants"]["baseline"]
    for name, ours in out["variants"].items():
        if name != "baseline":
            out[speedup_key(name)] = base["median_s"] / ours["median_s"]
            out[f"{speedup_key(name)}_mean"] = sum(base["seconds"]) / sum(ours["seconds"])
    out["bf16_pixel_agreement"] = agreement(labels["ours_bf16"], labels["ours_fp32"])
    if "ours_fp16" in labels:
        out["fp16_pixel_agreement"] = agreement(labels["ours_fp16"], labels["ours_fp32"])
    out["baseline_pixel_agreement"] = agreement(labels["baseline"], labels["ours_fp32"])
    return out


def summarise(header: dict, settings: dict, loader: dict, device: torch.device) -> dict:
    """The whole report: `header` facts, per-setting results, overall speedups (geometric means), targets."""
    report = dict(header)
    first = next(iter(settings.values()))
    for key in [speedup_key(name) for name in first["variants"] if name != "baseline"]:
        report[key] = math.exp(sum(math.log(s[key]) for s in settings.values()) / len(settings))
    report["bf16_pixel_agreement"] = sum(s["bf16_pixel_agreement"] for s in settings.values()) / len(settings)
    report["settings"], report["dataloader"] = settings, loader
    targets = TARGETS[device.type]
    met = {k: report[k] >= v for k, v in targets.items() if k.startswith("speedup")}
    if "cityscapes_bf16_peak_gb" in targets:
        peak_gb = settings["cityscapes"]["variants"]["ours_bf16"]["peak_mem_mb"] / 1024
        met["cityscapes_bf16_peak_gb"] = peak_gb < targets["cityscapes_bf16_peak_gb"]
    report["targets"], report["targets_met"] = targets, met
    return report


def write(report: dict, out: Path) -> str:
    """benchmarks/results/<machine>.json and .md; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{report['machine']}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Throughput on {report['device_name']} ({report['device']}, {report['threads']} threads, torch {report['torch']})", "",
             f"{report['models']}; {report['vocabulary_classes']}-class random vocabulary; crop_batch_size {report['crop_batch_size']}; "
             f"ours takes {report.get('images_per_step', 1)} image(s) per call, the baseline 1. "
             f"Baseline = original-like execution ({report['baseline_precision']}, one crop at a time, explicit softmax(QKᵀ)V in the "
             "VFM, sequence-first nn.MultiheadAttention in CLIP, PyTorch's own linear layers). Variants alternate image by image; s / image is the median. "
             "Peak memory: one image per variant, above the level after loading (CPU: sampled resident set size, in a fresh "
             "process; GPU: torch.cuda.max_memory_allocated).", "",
             f"CPU: PyTorch dispatch {report.get('torch_cpu_capability', 'unknown')}, flags "
             f"{', '.join(report.get('cpu_flags', [])) or 'unknown'}.", "",
             "| setting | variant | images | s / image | images/s | peak memory (MiB) | speedup vs baseline |",
             "|---|---|---|---|---|---|---|"]
    for name, s in report["settings"].items():
        for variant, v in s["variants"].items():
            speed = s[speedup_key(variant)] if variant != "baseline" else 1.0
            lines.append(f"| {name} {s['resized_hw'][1]}x{s['resized_hw'][0]} ({s['crops_per_image']} crops of {s['crop']}) | "
                         f"{variant} | {s['images']} | {v['median_s']:.2f} | {v['images_per_s']:.3f} | {v['peak_mem_mb']:.0f} | {speed:.2f}x |")
    targets = ", ".join(f"{k} >= {v}" if k.startswith("speedup") else f"{k} < {v}" for k, v in report["targets"].items())
    lines += ["", f"**speedup_fp32 = {report['speedup_fp32']:.2f}x, speedup_bf16 = {report['speedup_bf16']:.2f}x** (geometric "
              f"means over the settings; targets {targets}; met: {report['targets_met']}).", ""]
    lines += cpu_kernel_lines(report)
    for name, s in report["settings"].items():
        lines.append(f"- {name}: speedups from totals instead of medians: fp32 {s['speedup_fp32_mean']:.2f}x, bf16 "
                     f"{s['speedup_bf16_mean']:.2f}x. bf16 labels agree with fp32 on {s['bf16_pixel_agreement']:.2f} % of pixels "
                     + (f"(fp16: {s['fp16_pixel_agreement']:.2f} %) " if "fp16_pixel_agreement" in s else "")
                     + f"(baseline vs ours fp32: {s['baseline_pixel_agreement']:.2f} %).")
    for name, d in report["dataloader"].items():
        lines.append(f"- {name} files through a {d['workers']}-worker DataLoader (decode + resize in the workers), ours_bf16: "
                     f"the model waits for data {100 * d['wait_share']:.1f} % of the time ({100 * d['steady_wait_share']:.1f} % "
                     f"after the first image, whose wait of {d['first_wait_s']:.2f} s includes starting the workers).")
    lines.append(f"- Other processes used {100 * report['other_load_share']:.0f} % of the machine's CPU during the timed part "
                 f"(a busy neighbour skews timings). Wall time of the whole run: {report['wall_s'] / 60:.1f} min.")
    text = "\n".join(lines) + "\n"
    (out / f"{report['machine']}.md").write_text(text)
    return text


def cpu_kernel_lines(report: dict) -> list[str]:
    """What a CPU report says about its kernels: which fp32 linear path ran and whether the other one was faster;
    which oneDNN kernels autocast's bf16 matmuls took (none: emulated bf16, slower than fp32), and whether the CPU has
    native bf16 instructions."""
    lines = []
    chosen = report.get("fp32_linear")
    other = next((key for key in ("speedup_fp32_torch_linear", "speedup_fp32_onednn") if key in report), None)
    if chosen and other:
        name, faster = "ours_" + other.removeprefix("speedup_"), report[other] > report["speedup_fp32"]
        how = "chose " + chosen["why"] if chosen["set"] == "auto" else chosen["why"]
        lines += [f"ours_fp32 ran {chosen['kernel']} fp32 linears (onednn_linear={json.dumps(chosen['set'])} {how}). {name} takes the other path: {report[other]:.2f}x against ours_fp32's "
                  f"{report['speedup_fp32']:.2f}x, so the choice was {'NOT ' if faster else ''}the faster one on this CPU.", ""]
    if "onednn_isa" in report:
        bf16 = ", ".join(report["onednn_bf16_matmuls"]) or ("none: oneDNN takes no bf16 matmul on this CPU, PyTorch's own "
                                                           "emulated bf16 GEMM runs (slower than fp32; no AVX-512 bf16 or AMX)")
        lines += [f"oneDNN ISA: {report['onednn_isa']}; fp32 linear on oneDNN: {', '.join(report['onednn_fp32_linear']) or 'none'}; "
                  f"bf16 autocast matmuls on oneDNN: {bf16}.", ""]
    if report.get("cpu_bf16"):    # the fact `proxyclip` reads before a bf16 run on a CPU (metrics.json: precision.cpu_bf16)
        lines += [f"bf16 on this CPU, as proxyclip reads it: {report['cpu_bf16']['why']}.", ""]
    return lines


def methods_summary(report: dict) -> str:
    """One line of method_cost.measure's report: each measured preset's images/s and peak memory, ProxyCLIP's MFU, failures."""
    rows = report["presets"]
    measured = [name for name, row in rows.items() if "images_per_s" in row]
    failed = [name for name, row in rows.items() if "error" in row]
    base = rows[report["baseline"]]
    return (f"{len(measured)} of {len(rows)} presets measured ({report['image']}, {report['images']} images, "
            f"{report['precision']}): " + ", ".join(f"{Path(n).stem} {rows[n]['images_per_s']:.1f} images/s "
                                                     f"{rows[n]['peak_memory_bytes'] / 1e9:.2f} GB" for n in measured)
            + (f"; ProxyCLIP {base['mfu_text']}" if "mfu_text" in base else "")
            + (f"; FAILED: {', '.join(failed)}" if failed else ""))


def write_methods(report: dict, out: Path, suffix: str = "methods") -> str:
    """benchmarks/results/<machine>-<suffix>.json and .md of method_cost.measure; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    name = f"{report['machine']}-{suffix}"
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    kinds = sorted({row["peak_memory_kind"] for row in report["presets"].values() if "peak_memory_kind" in row})
    lines = [f"# Cityscapes images ({report['image']}) per method on {report['device_name']} ({report['device']})", "",
             f"torch {report['torch']}, {report['threads']} threads, {report.get('torch_cpu_capability', 'unknown')}; "
             f"precision {report.get('precision', '32-true')}; "
             f"{report['models']}; each method under its own Cityscapes protocol, in its own process; "
             f"{report['images']} image(s), {report['rounds']} round(s) in rotating order (test loop: the median); "
             f"peak memory: {', '.join(kinds) or 'none measured'} (the largest round); ratios to `{report['baseline']}` "
             "in the same run.", "",
             "| preset | method | images/s | x {0} | test loop (s) | peak memory (GB) | x {0} |".format(
                 "ProxyCLIP" if report["baseline"] == "default.yaml" else report["baseline"]),
             "|---|---|---:|---:|---:|---:|---:|"]
    for preset, row in report["presets"].items():
        if "images_per_s" not in row:
            lines.append(f"| {preset} | {'failed' if 'error' in row else row['skipped']} | | | | | |")
            continue
        lines.append(f"| {preset} | {row['method']} | {row['images_per_s']:.3f} | {row.get('speed_ratio', math.nan):.2f} | "
                     f"{row['test_loop_s']:.2f} | {row['peak_memory_bytes'] / 1e9:.2f} | {row.get('memory_ratio', math.nan):.2f} |")
    text = "\n".join(lines) + "\n"
    (out / f"{name}.md").write_text(text)
    return text
