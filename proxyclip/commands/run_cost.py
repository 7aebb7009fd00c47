"""What each setting of an eval_all folder cost to evaluate: images, test-loop seconds, images/s, peak memory.

Read from each finished benchmark's metrics.json `timing` (proxyclip/shell/loop_timer.py) and run.json's `host`.
A setting's images/s is its images over its test loops' seconds (text encoding, model building and process start
are not in them); its peak memory is its benchmarks' largest. Folders written before the peak memory was recorded
still summarise: their peak is None, shown as '-'.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .eval_protocols import is_setting_folder

GB = 1e9
COLUMNS = ("images_per_s", "test_loop_s", "peak_memory_gb")            # summary.csv
TITLES = ("images/s", "test loop (s)", "peak memory (GB)")              # summary.md


def benchmark_cost(bench_dir: Path) -> dict[str, Any] | None:
    """One finished benchmark's cost, with where it ran; None when its folder has no finished result or no timing."""
    run_file, metrics_file = bench_dir / "run.json", bench_dir / "metrics.json"
    run = json.loads(run_file.read_text()) if run_file.is_file() else {}
    if run.get("status", "ok") != "ok" or not metrics_file.is_file():
        return None
    timing = json.loads(metrics_file.read_text()).get("timing") or {}
    if "images" not in timing or "test_loop_s" not in timing:
        return None
    return {"images": int(timing["images"]), "test_loop_s": float(timing["test_loop_s"]),
            "images_per_s": timing["images"] / max(timing["test_loop_s"], 1e-9),
            "peak_memory_bytes": timing.get("peak_memory_bytes"), "peak_memory_kind": timing.get("peak_memory_kind"),
            "where": (run.get("host") or "unknown host", timing.get("device_name") or "unknown device")}


def collect_cost(output: Path) -> tuple[dict[str, dict[str, Any]], set[tuple[str, str]]]:
    """({setting: cost}, every (host, device) the settings ran on). A setting's cost: {"images", "test_loop_s",
    "images_per_s", "peak_memory_bytes", "peak_memory_kind", "benchmarks": {benchmark: {"images", "test_loop_s",
    "images_per_s", "peak_memory_bytes"}}}; `peak_memory_*` None when no benchmark recorded it."""
    costs: dict[str, dict[str, Any]] = {}
    kinds: dict[tuple[str, str], str | None] = {}          # (setting, benchmark): its peak memory's kind
    places: set[tuple[str, str]] = set()
    for bench_dir in sorted(d for d in output.glob("*/*/") if is_setting_folder(d.parent, output)):   # as the table's
        found = benchmark_cost(bench_dir)
        if found is None:
            continue
        setting, benchmark = bench_dir.parent.name, bench_dir.name
        places.add(found.pop("where"))
        kinds[setting, benchmark] = found.pop("peak_memory_kind")
        costs.setdefault(setting, {"benchmarks": {}})["benchmarks"][benchmark] = found
    for setting, cost in costs.items():
        benches = cost["benchmarks"]
        images, seconds = sum(b["images"] for b in benches.values()), sum(b["test_loop_s"] for b in benches.values())
        measured = [name for name, b in benches.items() if b["peak_memory_bytes"] is not None]
        largest = max(measured, key=lambda name: benches[name]["peak_memory_bytes"], default=None)
        cost.update(images=images, test_loop_s=seconds, images_per_s=images / max(seconds, 1e-9),
                    peak_memory_bytes=None if largest is None else benches[largest]["peak_memory_bytes"],
                    peak_memory_kind=None if largest is None else kinds[setting, largest])
    return costs, places


def csv_cells(cost: dict[str, Any] | None) -> list[Any]:
    """summary.csv's COLUMNS for one row ('' where unknown)."""
    if cost is None:
        return ["", "", ""]
    peak = cost["peak_memory_bytes"]
    return [cost["images_per_s"], cost["test_loop_s"], "" if peak is None else peak / GB]


def markdown_cells(cost: dict[str, Any] | None) -> list[str]:
    """summary.md's TITLES for one row ('-' where unknown)."""
    if cost is None:
        return ["-", "-", "-"]
    peak = cost["peak_memory_bytes"]
    return [f"{cost['images_per_s']:.2f}", f"{cost['test_loop_s']:.1f}", "-" if peak is None else f"{peak / GB:.2f}"]


def cost_note(costs: dict[str, dict[str, Any]], places: set[tuple[str, str]]) -> str:
    """The line under summary.md's table that says what the cost columns measure and where they were measured."""
    if not costs:
        return ""
    kinds = sorted({c["peak_memory_kind"] for c in costs.values() if c["peak_memory_kind"]})
    where = "; ".join(f"{device} on {host}" for host, device in sorted(places))
    note = ("\nimages/s: a setting's images over its test loops' seconds (no model building, text encoding or process "
            "start); peak memory: its benchmarks' largest (" + (", ".join(kinds) or "not recorded") + f"). Measured on {where}")
    if len(places) > 1:
        note += ": the settings ran on different hosts or devices, whose costs are not comparable"
    if len({frozenset(cost["benchmarks"]) for cost in costs.values()}) > 1:
        note += ("; the settings finished different benchmarks, whose images differ in size: compare them per benchmark "
                 "(summary.json's cost.benchmarks)")
    return note + ".\n"
