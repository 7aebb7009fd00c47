"""What one Cityscapes image costs each method: seconds and peak memory, each method under its own protocol.

Every preset runs `main.py test --config configs/cityscapes.yaml --model <preset>` (so the CLI adds the method's
own `configs/<method>/cityscapes.yaml`: its resize, windows and options) on a one-image Cityscapes layout written
here (one photo-like 2048 x 1024 image), each in a fresh process, with the preset's full-size architecture and
random weights (nothing is downloaded; random weights cost what trained ones cost). Per method:

- `test_loop_s`: the test loop's seconds for the image (metrics.json's timing; text encoding and model building
  are not in it), and its ratio to ProxyCLIP's (the default preset, measured in the same run);
- `peak_rss_gb`: the process's peak resident memory (models included; `os.wait4`'s ru_maxrss of that process),
  and its ratio to ProxyCLIP's.

CorrCLIP reads region masks: a `<stem>.npz` with 48 rectangular regions is written for the image (the cost of
producing real SAM2 masks is `proxyclip-masks`'s, paid once per dataset, not per evaluation). Trident's SAM is
built with random weights too.

    python benchmarks/method_cost.py                       # every method, CPU (about 10 min on 2 cores)
    python benchmarks/method_cost.py --presets default.yaml cass_vitb16.yaml

Results: results/<machine>-method-cost.json / .md (the CPU named, as every CPU timing here: compare ratios only
within one run on one machine).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.measure import cpu_capability, device_name, fake_image, machine_slug  # noqa: E402

STEM = "frankfurt_000000_000019"
DEFAULT_PRESETS = ("default.yaml", "sclip_vitb16.yaml", "clearclip_vitb16.yaml", "naclip_vitb16.yaml",
                   "scclip_vitb16.yaml", "cass_vitb16.yaml", "resclip_vitb16.yaml", "trident_vitb16.yaml",
                   "corrclip_vitb16.yaml")


def write_layout(folder: Path, height: int, width: int) -> tuple[Path, Path]:
    """A Cityscapes layout with one image (leftImg8bit/val/frankfurt/..., gtFine/val/frankfurt/...), and a folder
    with its region masks (48 rectangles, ids 1..48, 0 unsegmented) for CorrCLIP. Returns (root, masks folder)."""
    root = folder / "cityscapes"
    images, labels = root / "leftImg8bit" / "val" / "frankfurt", root / "gtFine" / "val" / "frankfurt"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    Image.fromarray(fake_image(height, width, seed=0)).save(images / f"{STEM}_leftImg8bit.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 34, (height, width), dtype=np.uint8)).save(labels / f"{STEM}_gtFine_labelIds.png")
    train_ids = rng.integers(0, 19, (height, width), dtype=np.uint8)
    Image.fromarray(train_ids).save(labels / f"{STEM}_gtFine_labelTrainIds.png")
    masks = folder / "region_masks"
    masks.mkdir()
    mask = np.zeros((height, width), dtype=np.int64)
    for index, (y, x) in enumerate(np.ndindex(6, 8), start=1):   # a 6 x 8 grid of regions, a border left unsegmented
        mask[y * height // 6 + 4:(y + 1) * height // 6 - 4, x * width // 8 + 4:(x + 1) * width // 8 - 4] = index
    np.savez_compressed(masks / f"{STEM}_leftImg8bit.npz", instance_mask=mask)
    return root, masks


def random_weights_preset(preset: Path, out: Path, masks: Path) -> tuple[Path, dict | None]:
    """The preset with every model's weights random (same architecture), and the method options to pass on the
    command line (after the protocol file, whose method_kwargs would replace the preset's wholesale): Trident's SAM
    random, CorrCLIP pointed at the masks."""
    spec = yaml.safe_load(preset.read_text())
    seg = spec["segmentor"]
    seg["clip_pretrained"] = None
    if seg.get("vfm") is not None or "vfm_pretrained" in seg:
        seg["vfm_pretrained"] = False
    seg["text_cache"] = False
    method = seg.get("method", "proxyclip")
    own = {"trident": {"sam_checkpoint": False}, "corrclip": {"instance_mask_path": str(masks)}}.get(method)
    kwargs = None
    if own is not None:
        protocol = ROOT / "configs" / method / "cityscapes.yaml"
        stated = yaml.safe_load(protocol.read_text()) if protocol.is_file() else {}
        stated = (((stated or {}).get("model") or {}).get("segmentor") or {}).get("init_args", {}).get("method_kwargs")
        kwargs = {**(seg.get("method_kwargs") or {}), **(stated or {}), **own}
    path = out / preset.name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, kwargs


def run_one(preset: Path, root: Path, out: Path, method_kwargs: dict | None) -> dict:
    """One `main.py test` in its own process: its test loop seconds and peak RSS."""
    cmd = [sys.executable, str(ROOT / "main.py"), "test", "--config", str(ROOT / "configs" / "cityscapes.yaml"),
           "--model", str(preset), "--data.init_args.root", str(root), "--model.output_dir", str(out),
           "--trainer.logger", "false", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
           "--data.init_args.num_workers", "0"]
    if method_kwargs is not None:
        cmd += ["--model.segmentor.init_args.method_kwargs", json.dumps(method_kwargs)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": output[-2000:], "wall_s": wall}
    metrics = json.loads(next(out.rglob("metrics.json")).read_text())
    timing = metrics.get("timing", {})
    return {"method": metrics.get("method"), "test_loop_s": timing.get("test_loop_s"),
            "peak_rss_gb": usage.ru_maxrss * 1024 / 1e9, "wall_s": wall,
            "protocol": metrics.get("config", {}).get("method_protocol")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(DEFAULT_PRESETS),
                        help="configs/model/ files; the first is the baseline of the ratios (default: ProxyCLIP's)")
    parser.add_argument("--size", default="2048x1024", help="W x H of the image (Cityscapes: 2048x1024)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    device = torch.device("cpu")
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, masks = write_layout(tmp, height, width)
        for name in args.presets:
            preset, method_kwargs = random_weights_preset(ROOT / "configs" / "model" / name, tmp, masks)
            rows[name] = run_one(preset, root, tmp / f"out_{Path(name).stem}", method_kwargs)
            row = rows[name]
            print(f"{name:28s} " + (f"test loop {row['test_loop_s']:.2f} s, peak RSS {row['peak_rss_gb']:.2f} GB"
                                     if "error" not in row else "FAILED:\n" + row["error"]), flush=True)
    base = rows[args.presets[0]]
    for row in rows.values():
        if "error" not in row and "error" not in base:
            row["time_ratio"] = row["test_loop_s"] / base["test_loop_s"]
            row["memory_ratio"] = row["peak_rss_gb"] / base["peak_rss_gb"]
    report = {"machine": device_name(device), **cpu_capability(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "image": f"{width}x{height}", "baseline": args.presets[0],
              "presets": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    slug = machine_slug(device)
    (args.out / f"{slug}-method-cost.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# One Cityscapes image ({width}x{height}) per method, CPU", "",
             f"{report['machine']}, torch {torch.__version__}, {report['torch_cpu_capability']}; full-size "
             "architectures, random weights; each method under its own Cityscapes protocol; ratios to "
             f"`{args.presets[0]}` in the same run.", "",
             "| preset | method | test loop (s) | x ProxyCLIP | peak RSS (GB) | x ProxyCLIP |", "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        if "error" in row:
            lines.append(f"| {name} | failed | | | | |")
            continue
        lines.append(f"| {name} | {row['method']} | {row['test_loop_s']:.2f} | {row.get('time_ratio', 0):.2f} | "
                     f"{row['peak_rss_gb']:.2f} | {row.get('memory_ratio', 0):.2f} |")
    (args.out / f"{slug}-method-cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all("error" not in row for row in rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
