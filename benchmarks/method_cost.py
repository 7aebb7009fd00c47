"""What Cityscapes images cost each method: images/s and peak memory, each method under its own protocol.

Every preset runs `main.py test --config configs/cityscapes.yaml --model <preset>` (so the CLI adds the method's
own `configs/<method>/cityscapes.yaml`: its resize, windows and options) on a Cityscapes layout written here
(photo-like 2048 x 1024 images), each run in a fresh process on the chosen device, with the preset's full-size
architecture and random weights (nothing is downloaded; random weights cost what trained ones cost). With several
rounds the presets take turns in rotating order (as throughput.py's variants), so that the machine's drifts hit all
alike. Per method, from metrics.json's `timing`:

- `test_loop_s`: the test loop's seconds (the median over rounds; text encoding and model building are not in
  it), `images_per_s` = images / test_loop_s, and its ratio to ProxyCLIP's (the default preset, same run);
- `peak_memory_bytes`: on CUDA `torch.cuda.max_memory_allocated` during the test loop, on a CPU the process's
  peak resident memory (models included: each preset has its process), the largest over rounds, and its ratio.

CorrCLIP reads region masks: a `<stem>.npz` with 48 rectangular regions is written per image (the cost of
producing real SAM2 masks is `proxyclip-masks`'s, paid once per dataset, not per evaluation). Trident's SAM is
built with random weights too.

    python benchmarks/method_cost.py                       # the nine methods' ViT-B/16 presets, CPU (about 16 min on 2 cores)
    python benchmarks/method_cost.py --presets default.yaml cass_vitb16.yaml
    python benchmarks/throughput.py --methods [PRESET ...] [--device cuda] [--tiny]   # every shipped preset by default

Results: results/<machine>-method-cost.json / .md (throughput.py: <machine>-methods.*), written by
report.write_methods (the CPU named, as every CPU timing here: compare ratios only within one run on one machine).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
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
from benchmarks.report import write_methods  # noqa: E402

BASELINE = "default.yaml"      # ProxyCLIP's preset: the ratios' denominator
DEFAULT_PRESETS = (BASELINE, "sclip_vitb16.yaml", "clearclip_vitb16.yaml", "naclip_vitb16.yaml",
                   "scclip_vitb16.yaml", "cass_vitb16.yaml", "resclip_vitb16.yaml", "trident_vitb16.yaml",
                   "corrclip_vitb16.yaml")
# --tiny: tiny random encoders of each preset's kind (12 CLIP blocks: the methods' block indices exist; the ViTs
# have CLIP's heads and width, as CASS needs). They check the script and measure nothing.
TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 224, "layers": 12, "width": 64, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
TINY_VIT = {"depth": 2, "embed_dim": 64, "num_heads": 4}
TINY_SAM = {"img_size": 128, "embed_dim": 32, "depth": 2, "num_heads": 2, "global_attn_indexes": [1], "window_size": 4,
            "out_chans": 32}


def shipped_presets() -> list[str]:
    """Every preset in configs/model/ but the tiny random ones (tiny_*.yaml: nothing to measure), ProxyCLIP's first."""
    names = sorted(path.name for path in (ROOT / "configs" / "model").glob("*.yaml") if not path.name.startswith("tiny_"))
    return [BASELINE] + [name for name in names if name != BASELINE]


def presets_by_importance(smoke: bool = False) -> list[str]:
    """device_check.py's order: the nine methods' ViT-B/16 presets (ProxyCLIP's first), then the other presets from
    the smallest CLIP up (ViT-B, L, H: a budget estimated from the runs so far is overrun least); a smoke run (tiny
    models) takes ProxyCLIP and SCLIP."""
    if smoke:
        return [BASELINE, "sclip_vitb16.yaml"]
    rest = [name for name in shipped_presets() if name not in DEFAULT_PRESETS]
    return list(DEFAULT_PRESETS) + sorted(rest, key=lambda name: 2 if "vith14" in name else 1 if "vitl14" in name else 0)


def write_layout(folder: Path, height: int, width: int, count: int = 1) -> tuple[Path, Path]:
    """A Cityscapes layout with `count` images (leftImg8bit/val/frankfurt/..., gtFine/val/frankfurt/...), and a folder
    with their region masks (48 rectangles, ids 1..48, 0 unsegmented) for CorrCLIP. Returns (root, masks folder)."""
    root = folder / "cityscapes"
    images, labels = root / "leftImg8bit" / "val" / "frankfurt", root / "gtFine" / "val" / "frankfurt"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    masks = folder / "region_masks"
    masks.mkdir()
    mask = np.zeros((height, width), dtype=np.int64)
    for index, (y, x) in enumerate(np.ndindex(6, 8), start=1):   # a 6 x 8 grid of regions, a border left unsegmented
        mask[y * height // 6 + 4:(y + 1) * height // 6 - 4, x * width // 8 + 4:(x + 1) * width // 8 - 4] = index
    rng = np.random.default_rng(0)
    for number in range(count):
        stem = f"frankfurt_000000_{19 + number:06d}"
        Image.fromarray(fake_image(height, width, seed=number)).save(images / f"{stem}_leftImg8bit.png")
        Image.fromarray(rng.integers(0, 34, (height, width), dtype=np.uint8)).save(labels / f"{stem}_gtFine_labelIds.png")
        train_ids = rng.integers(0, 19, (height, width), dtype=np.uint8)
        Image.fromarray(train_ids).save(labels / f"{stem}_gtFine_labelTrainIds.png")
        np.savez_compressed(masks / f"{stem}_leftImg8bit.npz", instance_mask=mask)
    return root, masks


def random_weights_preset(preset: Path, out: Path, masks: Path, tiny: bool = False) -> tuple[Path, dict | None]:
    """The preset with every model's weights random (same architecture, or tiny ones of its kind), and the method
    options to pass on the command line (merged over the preset's and the protocol file's): Trident's SAM random,
    CorrCLIP pointed at the masks."""
    spec = yaml.safe_load(preset.read_text())
    seg = spec["segmentor"]
    seg["clip_pretrained"] = None
    if seg.get("vfm") is not None or "vfm_pretrained" in seg:
        seg["vfm_pretrained"] = False
    seg["text_cache"] = False
    method = seg.get("method", "proxyclip")
    if tiny:
        seg.update(clip_model=TINY_CLIP, clip_quick_gelu=None)
        if seg.get("vfm") is not None:
            seg["vfm_kwargs"] = {**TINY_SAM, "img_size": 256} if str(seg["vfm"]).startswith("sam") else TINY_VIT
    own = {"trident": {"sam_checkpoint": False, **({"sam_kwargs": TINY_SAM} if tiny else {})},
           "corrclip": {"instance_mask_path": str(masks)}}.get(method)
    kwargs = None
    if own is not None:
        protocol = ROOT / "configs" / method / "cityscapes.yaml"
        stated = yaml.safe_load(protocol.read_text()) if protocol.is_file() else {}
        stated = (((stated or {}).get("model") or {}).get("segmentor") or {}).get("init_args", {}).get("method_kwargs")
        kwargs = {**(seg.get("method_kwargs") or {}), **(stated or {}), **own}
    path = out / preset.name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path, kwargs


def run_one(preset: Path, root: Path, out: Path, method_kwargs: dict | None, device: str = "cpu",
            precision: str | None = None) -> dict:
    """One `main.py test` in its own process on `device` (with `--trainer.precision precision` when given): its
    test loop, images/s and peak memory (metrics.json)."""
    cmd = [sys.executable, str(ROOT / "main.py"), "test", "--config", str(ROOT / "configs" / "cityscapes.yaml"),
           "--model", str(preset), "--data.init_args.root", str(root), "--model.output_dir", str(out),
           "--model.num_panels", "0", "--trainer.logger", "false", "--trainer.accelerator", device, "--trainer.devices", "1"]
    cmd += ["--data.init_args.num_workers", "0"] if device == "cpu" else []   # a GPU's loading is the DataModule's
    cmd += ["--trainer.precision", precision] if precision is not None else []
    if method_kwargs is not None:
        cmd += ["--model.segmentor.init_args.method_kwargs", json.dumps(method_kwargs)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": proc.stdout[-2000:], "wall_s": wall}
    metrics = json.loads((out / "metrics.json").read_text())
    timing = metrics["timing"]
    return {"method": metrics.get("method"), "protocol": metrics.get("config", {}).get("method_protocol"),
            "images": timing["images"], "test_loop_s": timing["test_loop_s"], "images_per_s": timing["images_per_s"],
            "peak_memory_bytes": timing["peak_memory_bytes"], "peak_memory_kind": timing["peak_memory_kind"], "wall_s": wall}


def summarise_rounds(runs: list[dict]) -> dict:
    """A preset's rounds: the median test loop, its images/s, the largest peak memory; the first error if any."""
    failed = [run for run in runs if "error" in run]
    if failed:
        return {**failed[0], "rounds": runs}
    median = statistics.median(run["test_loop_s"] for run in runs)
    return {"method": runs[0]["method"], "protocol": runs[0]["protocol"], "images": runs[0]["images"],
            "test_loop_s": median, "images_per_s": runs[0]["images"] / median,
            "peak_memory_bytes": max(run["peak_memory_bytes"] for run in runs),
            "peak_memory_kind": runs[0]["peak_memory_kind"], "rounds": runs}


def measure(presets: list[str], device: str, width: int, height: int, images: int, rounds: int, tiny: bool,
            budget_s: float | None = None, precision: str | None = None) -> dict:
    """Every preset on the same images on `device`, `rounds` times in rotating order; ratios to the first preset.
    budget_s: a run that would end after this many seconds (its estimate: the longest run so far) is not started;
    its preset's row says `skipped` (device_check.py's methods check lists every preset within its budget).
    precision: `--trainer.precision` of every run (default: the trainer's, 32-true)."""
    runs: dict[str, list[dict]] = {name: [] for name in presets}
    started, longest = time.perf_counter(), 0.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, masks = write_layout(tmp, height, width, images)
        built = {name: random_weights_preset(ROOT / "configs" / "model" / name, tmp, masks, tiny) for name in presets}
        for index in range(rounds):
            shift = index % len(presets)
            for name in presets[shift:] + presets[:shift]:
                if budget_s is not None and time.perf_counter() - started + longest > budget_s:
                    print(f"round {index + 1}/{rounds} {name:32s} skipped: ~{longest:.0f} s would pass the {budget_s:.0f} s budget",
                          flush=True)
                    continue
                preset, method_kwargs = built[name]
                run = run_one(preset, root, tmp / f"out_{Path(name).stem}_{index}", method_kwargs, device, precision)
                runs[name].append(run)
                longest = max(longest, run["wall_s"])
                print(f"round {index + 1}/{rounds} {name:32s} " + (
                    f"test loop {run['test_loop_s']:.2f} s ({run['images_per_s']:.2f} images/s), peak memory "
                    f"{run['peak_memory_bytes'] / 1e9:.2f} GB" if "error" not in run else "FAILED:\n" + run["error"]), flush=True)
    rows = {name: summarise_rounds(found) if found else {"skipped": f"not run: over the {budget_s:.0f} s budget"}
            for name, found in runs.items()}
    base = rows[presets[0]]
    for row in rows.values():
        if "images_per_s" in row and "images_per_s" in base:
            row["speed_ratio"] = row["images_per_s"] / base["images_per_s"]
            row["memory_ratio"] = row["peak_memory_bytes"] / base["peak_memory_bytes"]
    torch_device = torch.device(device)
    return {"machine": machine_slug(torch_device), "device": device, "device_name": device_name(torch_device),
            **cpu_capability(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "models": "tiny random encoders of each preset's kind (smoke run: no numbers to keep)" if tiny else
            "full-size architectures, random weights", "image": f"{width}x{height}", "images": images, "rounds": rounds,
            "precision": precision or "32-true",
            "baseline": presets[0], "presets": rows}


def image_size(text: str) -> tuple[int, int]:
    """"2048x1024" -> (2048, 1024): W x H."""
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def add_method_arguments(parser: argparse.ArgumentParser) -> None:
    """throughput.py's per-method mode: --methods and the options only it takes."""
    parser.add_argument("--methods", nargs="*", metavar="PRESET",
                        help="per-method mode: these configs/model/ presets (none named: every shipped one), the first the "
                             "ratios' baseline (default.yaml, ProxyCLIP, is put first when it is among them)")
    parser.add_argument("--images", type=int, default=None, help="--methods: Cityscapes-like images per run (default 8 on CUDA, 1 on CPU)")
    parser.add_argument("--rounds", type=int, default=None, help="--methods: runs per preset, in rotating order (default 3 on CUDA, 1 on CPU)")
    parser.add_argument("--size", default=None, help="--methods: W x H of the images (default 2048x1024; --tiny: 128x64)")


def settle_method_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse the per-method options without --methods, and presets that are not shipped; fill in the defaults."""
    given = [flag for flag, value in (("--images", args.images), ("--rounds", args.rounds), ("--size", args.size)) if value is not None]
    if args.methods is None and given:
        parser.error(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to the per-method mode: add --methods (every shipped preset) or "
                     "--methods PRESET ..., or leave them out")
    if args.methods is not None:
        shipped = shipped_presets()
        unknown = [name for name in args.methods if name not in shipped]
        if unknown:
            tiny = [name for name in unknown if name.startswith("tiny_")]
            what = (f"{' '.join(tiny)}: tiny random models, no cost worth timing (--tiny times tiny models of each "
                    "preset's kind)" if tiny else f"{' '.join(unknown)}: not a preset in configs/model/")
            parser.error(f"--methods {what}; choose among {', '.join(shipped)}")
        args.methods = args.methods or shipped
        args.methods.sort(key=lambda name: name != BASELINE)    # ProxyCLIP first, the others in their order
        args.images = (8 if args.device == "cuda" else 1) if args.images is None else args.images
        args.rounds = (3 if args.device == "cuda" else 1) if args.rounds is None else args.rounds
        args.size = args.size or ("128x64" if args.tiny else "2048x1024")
        if min(args.images, args.rounds) < 1 or not re.fullmatch(r"[1-9]\d*x[1-9]\d*", args.size.lower()):
            parser.error(f"--images {args.images} --rounds {args.rounds} --size {args.size}: give at least one image and "
                         "one round, and the size as WIDTHxHEIGHT (e.g. 2048x1024)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(DEFAULT_PRESETS),
                        help="configs/model/ files; the first is the baseline of the ratios (default: ProxyCLIP's)")
    parser.add_argument("--size", default="2048x1024", help="W x H of the image (Cityscapes: 2048x1024)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    report = measure(args.presets, "cpu", *image_size(args.size), images=1, rounds=1, tiny=False)
    print(write_methods(report, args.out, "method-cost"))
    return 0 if all("error" not in row for row in report["presets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
