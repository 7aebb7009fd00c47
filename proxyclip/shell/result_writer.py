"""Writes what `test` produces: panels of the first images, metrics.json, per_class.csv, summary.md, the IoU chart."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from PIL import Image

from ..config_files import config_from_text
from ..method.onednn_linear import cpu_bf16
from .fonts import font_note
from .protocol_record import protocol_record
from .results import markdown_summary, nan_line, write_report
from .visualize import comparison_panel, iou_bar_chart, palette

# What a finished `test` leaves in its results folder: a later run into the same folder must not mix with them.
RESULT_FILES = ("metrics.json", "per_class.csv", "summary.md", "per_class_iou.png", "panels")


def run_config(trainer: Trainer) -> dict[str, Any] | None:
    """The resolved configuration of a CLI run, as the CLI's SaveConfigCallback holds it (None outside the CLI)."""
    for callback in trainer.callbacks:
        if isinstance(callback, SaveConfigCallback):
            return config_from_text(callback.parser.dump(callback.config, skip_none=False, skip_validation=True),
                                    "of this run")
    return None


def run_precision(trainer: Trainer, segmentor: Any) -> dict[str, Any]:
    """The precision that ran, as Lightning resolved it (its precision plugin), the autocast dtype, if any, and on a
    CPU which kernels ran the fp32 linear layers (oneDNN or PyTorch's own: the segmentor's `fp32_linear`) and whether
    it multiplies bf16 natively (`cpu_bf16`: where it does not, bf16 is emulated and slower than fp32)."""
    plugin = trainer.strategy.precision_plugin
    autocast = plugin.autocast_context_manager() if hasattr(plugin, "autocast_context_manager") else None
    dtype = getattr(autocast, "fast_dtype", None)
    device = trainer.strategy.root_device.type
    return {"precision": str(trainer.precision), "autocast_dtype": None if dtype is None else str(dtype).replace("torch.", ""),
            "device": device, "cpu_fp32_linear": getattr(segmentor, "fp32_linear", None) if device == "cpu" else None,
            "cpu_bf16": cpu_bf16() if device == "cpu" else None}


class ResultWriter(Callback):
    """Files of an evaluation, into the module's `results_dir()`: `panels/NNN_<image>.png` (image | ground truth |
    prediction; its arrays in NNN_<image>.npz) for the images whose dataset index is below the module's `num_panels`
    (each process saves those it holds, so the panels are the same whatever the number of processes), then, on rank 0
    only, metrics.json (with the resolved config and the precision that ran), per_class.csv, summary.md and
    per_class_iou.png. A test that ends early (Ctrl-C, an error) leaves no results: each process removes the panels
    it wrote, rank 0 the folder."""

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._seen, self._panels = 0, []         # this process's count of images and the panels it wrote
        note = font_note(pl_module.class_labels())
        if note and trainer.is_global_zero:
            print(note, file=sys.stderr, flush=True)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        # dataset positions when the batch carries them (the benchmark DataModules), else this process's count
        indices = batch.get("indices") or range(self._seen, self._seen + len(outputs))
        self._seen += len(outputs)
        for index, image, label, pred, path in zip(indices, batch["images"], batch["labels"], outputs, batch["paths"]):
            if index < pl_module.num_panels:
                self.save_panel(pl_module, index, image, label, pred, path)

    def save_panel(self, pl_module: LightningModule, index: int, image: torch.Tensor, label: torch.Tensor,
                   pred: torch.Tensor, path: str) -> None:
        """image (resized back to its ground truth's size for display) | ground truth | prediction, and beside it
        NNN_<image>.npz with the three arrays (image [H, W, 3] uint8, label, pred [H, W]; ignore_index), from which
        eval_all composes the same image segmented by every method (proxyclip/commands/compare_panels.py)."""
        size = tuple(label.shape[-2:])
        image = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
        image = image.clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()
        names = pl_module.class_labels()
        panel = comparison_panel(image, label.cpu().numpy(), pred.cpu().numpy(), names, pl_module.ignore_index,
                                 palette(len(names), pl_module.dataset_name))
        folder = pl_module.results_dir() / "panels"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{index:03d}_{Path(path).stem}"          # a stem may hold dots: no with_suffix
        self._panels += [folder / f"{stem}.png", folder / f"{stem}.npz"]   # before writing: a half-written one too
        Image.fromarray(panel).save(self._panels[-2])
        np.savez_compressed(self._panels[-1], image=image, label=label.cpu().numpy().astype(np.int32),
                            pred=pred.cpu().numpy().astype(np.int32), ignore_index=pl_module.ignore_index)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero or pl_module.report is None:
            return
        report = pl_module.report
        report["config"] = run_config(trainer)
        report["precision"] = run_precision(trainer, pl_module.segmentor)
        report["protocol"] = protocol_record(report["config"], pl_module.segmentor, trainer.datamodule)
        out_dir = write_report(report, pl_module.results_dir())
        names = pl_module.class_labels()
        chart = iou_bar_chart(names, [row["IoU"] for row in report["per_class"]],
                              f"{report['dataset']} per-class IoU (%), mIoU {report['mIoU'] or float('nan'):.2f}",
                              palette(len(names), report["dataset"]))
        Image.fromarray(chart).save(out_dir / "per_class_iou.png")
        t = report["timing"]
        images = f"{t['images']} image{'' if t['images'] == 1 else 's'}"
        where = f" on {t['processes']} processes" if t["processes"] > 1 else ""
        own = f"process 0: {t['rank0_images']} of them, " if t["processes"] > 1 else ""
        nan = nan_line(report, pl_module.segmentor.nan_possible)
        print(markdown_summary(report) + f"\n{images}{where} in {t['test_loop_s']:.1f} s ({t['images_per_s']:.1f} images/s; "
              f"{own}{100 * t['data_wait_share']:.0f} % waiting for data, text encoding {t['text_encoding_s']:.1f} s; "
              f"peak memory {t['peak_memory_bytes'] / 1e9:.2f} GB, {t['peak_memory_kind']})\n"
              f"Results written to {out_dir}/ (metrics.json, per_class.csv, summary.md, per_class_iou.png, panels/)"
              + (f"\n{nan}" if nan else ""), flush=True)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # Every process removes the panels it wrote (under DDP each writes its own, and may still write after rank 0
        # is here); rank 0 also the folder, which held no panels before this run (the CLI refuses or, with
        # --overwrite, empties a folder with earlier results): every panel in it is this unfinished run's.
        if trainer.state.fn != "test" or getattr(pl_module, "_results_dir", None) is None:
            return
        for panel in getattr(self, "_panels", []):
            panel.unlink(missing_ok=True)
        folder = pl_module.results_dir() / "panels"
        if trainer.is_global_zero:
            shutil.rmtree(folder, ignore_errors=True)
            return
        try:
            folder.rmdir()                        # emptied: the last process out removes it
        except OSError:                           # gone already, or another process's panels are still there
            pass
