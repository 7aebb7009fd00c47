"""A device check run's results (device_check.py), the one object every check receives: it records each check's
outcome and rewrites <out>/<slug>.json and .md at once, runs a check within the budget, and counts the FLOPs
behind an MFU. The checks (exactness_checks.py, speed_checks.py) and the script that runs them all import it from
here, so that no check imports the script."""
from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

import torch

from benchmarks import flops, throughput
from benchmarks.device_inputs import build
from benchmarks.measure import device_name, machine_slug


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
