"""Evaluation results as files a user keeps: metrics.json, per_class.csv, summary.md."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import torch

from ..vocabulary import display_names

COUNT_NAMES = ("intersect", "union", "pred", "label")


def _pct(value: torch.Tensor | float) -> float | None:
    value = float(value) * 100.0
    return None if math.isnan(value) else value


def build_report(metrics: dict[str, torch.Tensor], class_names: list[str], dataset: str = "",
                 config: Any = None, names: list[str] | None = None) -> dict[str, Any]:
    """A JSON-ready report; percentages at full precision (NaN -> null). `names`: short class names
    (default: each class's first query)."""
    counts = metrics["counts"].cpu().tolist()
    names = names or display_names(class_names)
    per_class = [
        {"index": c, "name": names[c], "queries": line, "IoU": _pct(metrics["IoU"][c]), "Acc": _pct(metrics["Acc"][c]),
         **{key: counts[k][c] for k, key in enumerate(COUNT_NAMES)}}
        for c, line in enumerate(class_names)
    ]
    return {
        "dataset": dataset,
        "num_images": int(metrics["num_images"]),
        "num_classes": len(class_names),
        "aAcc": _pct(metrics["aAcc"]),
        "mIoU": _pct(metrics["mIoU"]),
        "mAcc": _pct(metrics["mAcc"]),
        "per_class": per_class,
        "counts": dict(zip(COUNT_NAMES, counts)),
        "nan_pixels": int(metrics["nan_pixels"]) if "nan_pixels" in metrics else 0,   # decided on NaN logits: class 0
        "config": config,
    }


def nan_line(report: dict[str, Any], possible: bool) -> str | None:
    """The run's one line about pixels decided on NaN logits (docs/method.md §3.4): where they can happen
    (`possible`: ProxyCLIP under numerics "original") or did; else None."""
    count = report.get("nan_pixels", 0)
    if not (possible or count):
        return None
    return (f"{count} pixel{'' if count == 1 else 's'} had NaN logits and {'was' if count == 1 else 'were'} labelled class 0 "
            f"(numerics: {report.get('numerics', 'defined')}; an emptied proxy-attention row, docs/method.md §3.4)")


def _fmt(value: float | None) -> str:
    return "nan" if value is None else f"{value:.2f}"


def markdown_summary(report: dict[str, Any]) -> str:
    """The papers' view: percentages rounded to 2 decimals."""
    lines = [
        f"# {report['dataset'] or 'evaluation'}: {report['num_images']} image{'' if report['num_images'] == 1 else 's'}, "
        f"{report['num_classes']} class{'' if report['num_classes'] == 1 else 'es'}",
        "",
        "| aAcc | mIoU | mAcc |",
        "|---:|---:|---:|",
        f"| {_fmt(report['aAcc'])} | {_fmt(report['mIoU'])} | {_fmt(report['mAcc'])} |",
        "",
        "| class | IoU | Acc |",
        "|---|---:|---:|",
    ]
    lines += [f"| {row['name']} | {_fmt(row['IoU'])} | {_fmt(row['Acc'])} |" for row in report["per_class"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: str | Path) -> Path:
    """Write metrics.json, per_class.csv and summary.md into `out_dir`; returns the folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2, default=str))
    with open(out_dir / "per_class.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["index", "name", "IoU", "Acc", *COUNT_NAMES])
        writer.writeheader()
        for row in report["per_class"]:
            writer.writerow({k: row[k] for k in writer.fieldnames})
    (out_dir / "summary.md").write_text(markdown_summary(report))
    return out_dir
