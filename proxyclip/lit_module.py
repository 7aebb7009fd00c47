"""The LightningModule: evaluation (`test`) and prediction (`predict`) of a built segmentor; no training."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import time

import lightning as L
import torch
import torch.nn.functional as F
from PIL import Image
from lightning.pytorch.utilities import rank_zero_info

from .errors import ProxyCLIPError
from .loop_timer import LoopTimer
from .metrics import SegmentationMetric
from .results import build_report, markdown_summary, write_report
from .segmentor import ProxyCLIPSegmentor
from .visualize import comparison_panel, iou_bar_chart


class ProxyCLIPModule(L.LightningModule):
    """Wraps a `ProxyCLIPSegmentor` for Lightning; the benchmark protocol comes from the DataModule (linked by main.py).

    Args:
        segmentor: the built segmentor (LightningCLI builds it from `model.segmentor` in the YAML).
        class_names: vocabulary, one entry per class, synonyms separated by "; " (linked from `data.class_names`).
        display_names: one short name per class for results and pictures (linked; default: each class's first name).
        prob_thd: background threshold of the benchmark (linked from the DataModule; null keeps the segmentor's).
        crop_size: sliding-window crop of the benchmark (linked; null keeps the segmentor's).
        stride: sliding-window stride of the benchmark (linked; null keeps the segmentor's).
        ignore_index: label value that is not counted (linked from the DataModule).
        dataset_name: name written into the results.
        output_dir: where results go (default: the trainer's log dir).
        num_panels: during `test`, save image | ground truth | prediction panels of the first this many images.
    """

    def __init__(
        self,
        segmentor: ProxyCLIPSegmentor,
        class_names: list[str] | None = None,
        display_names: list[str] | None = None,
        prob_thd: float | None = None,
        crop_size: int | None = None,
        stride: int | None = None,
        ignore_index: int = 255,
        dataset_name: str = "",
        output_dir: str | None = None,
        num_panels: int = 8,
    ) -> None:
        super().__init__()
        self.segmentor = segmentor
        for name, value in (("prob_thd", prob_thd), ("crop_size", crop_size), ("stride", stride)):
            if value is not None:
                setattr(segmentor, name, value)
        segmentor.check_geometry()
        if class_names is not None:
            segmentor.set_vocabulary(class_names)
        self.ignore_index, self.dataset_name, self.output_dir = ignore_index, dataset_name, output_dir
        self.display_names = display_names
        self.num_panels, self._panels_saved = num_panels, 0
        self.metric = SegmentationMetric(max(segmentor.num_classes, 1), ignore_index)
        self.run_config: Any = None  # the resolved CLI config, set by main.py, written into metrics.json
        self.report: dict[str, Any] | None = None
        self._results_dir: Path | None = None

    # --- no training: ProxyCLIP is training-free --------------------------------------------------
    def training_step(self, *args: Any, **kwargs: Any) -> None:
        raise ProxyCLIPError("ProxyCLIP is training-free: there is nothing to fit. Use `test` (evaluate a benchmark) or `predict` (segment images).")

    def configure_optimizers(self) -> None:
        raise ProxyCLIPError("ProxyCLIP is training-free: there is nothing to fit. Use `test` (evaluate a benchmark) or `predict` (segment images).")

    # --- evaluation ---------------------------------------------------------------------------------
    def on_test_start(self) -> None:
        if self.metric.num_classes != self.segmentor.num_classes:
            self.metric = SegmentationMetric(self.segmentor.num_classes, self.ignore_index).to(self.device)
        self.metric.reset()
        self._panels_saved = 0
        # The vocabulary is encoded here, timed apart from the loop (it would otherwise land in the first batch).
        start = time.perf_counter()
        self.segmentor.text_embeddings()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timing: dict[str, float] = {"text_encoding_s": time.perf_counter() - start}
        self._timer = LoopTimer(self.device)

    def on_test_epoch_start(self) -> None:
        self._timer.start()

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._timer.batch_start()

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._timer.batch_end()

    def setup(self, stage: str) -> None:
        # `trainer.log_dir` is a collective under DDP (rank 0 broadcasts its folder), so it is resolved here, on
        # every rank at once, and never inside a branch that only rank 0 takes (that deadlocks the others).
        self._results_dir = Path(self.output_dir or self.trainer.log_dir or self.trainer.default_root_dir)

    def results_dir(self) -> Path:
        """Where results go: `output_dir`, else the trainer's log dir (resolved in `setup`)."""
        if self._results_dir is None:
            raise RuntimeError("results_dir() is known once the trainer has called setup()")
        return self._results_dir

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        labels = batch["labels"]
        preds = self.segmentor.segment_batch(batch["images"], [tuple(label.shape[-2:]) for label in labels])
        for pred, label, image, path in zip(preds, labels, batch["images"], batch["paths"]):
            self.metric.update(pred, label)
            if self.trainer.is_global_zero and self._panels_saved < self.num_panels:
                self._save_panel(image, label, pred, path)

    def class_labels(self) -> list[str]:
        """Short class names for tables and pictures."""
        names = self.segmentor.class_names
        if self.display_names is not None and len(self.display_names) == len(names):
            return list(self.display_names)
        return [n.split("; ")[0] for n in names]

    def _save_panel(self, image: torch.Tensor, label: torch.Tensor, pred: torch.Tensor, path: str) -> None:
        """image (resized back to its ground truth's size for display) | ground truth | prediction."""
        size = tuple(label.shape[-2:])
        image = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
        image = image.clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()
        panel = comparison_panel(image, label.cpu().numpy(), pred.cpu().numpy(), self.class_labels(), self.ignore_index)
        folder = self.results_dir() / "panels"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(panel).save(folder / f"{self._panels_saved:03d}_{Path(path).stem}.png")
        self._panels_saved += 1

    def on_test_epoch_end(self) -> None:
        self.timing.update(self._timer.stop(int(self.metric.num_images)))   # this process's images and time
        metrics = self.metric.compute()  # sums the counts of every process
        for key in ("aAcc", "mIoU", "mAcc"):
            self.log(key, float(metrics[key]) * 100.0, rank_zero_only=True)
        self.report = build_report(metrics, self.segmentor.class_names, self.dataset_name, self.run_config,
                                   self.class_labels())
        self.report["timing"] = dict(self.timing, processes=self.trainer.world_size)
        if self.trainer.is_global_zero:
            out_dir = write_report(self.report, self.results_dir())
            chart = iou_bar_chart(self.class_labels(), [row["IoU"] for row in self.report["per_class"]],
                                  f"{self.dataset_name} per-class IoU (%), mIoU {self.report['mIoU'] or float('nan'):.2f}")
            Image.fromarray(chart).save(out_dir / "per_class_iou.png")
            t = self.timing
            rank_zero_info(markdown_summary(self.report) + f"\n{t['images']} images in {t['test_loop_s']:.1f} s on this "
                           f"process ({t['images_per_s']:.1f} images/s, {100 * t['data_wait_share']:.0f} % waiting for data; "
                           f"text encoding {t['text_encoding_s']:.1f} s)\nResults written to {out_dir}/ (metrics.json, per_class.csv, "
                           "summary.md, per_class_iou.png, panels/)")

    # --- prediction ---------------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """Per image: path, class probabilities [C, H, W] and labels [H, W] at the original size."""
        sizes = batch.get("ori_sizes") or [tuple(image.shape[-2:]) for image in batch["images"]]
        with torch.no_grad():
            logits = self.segmentor(batch["images"], sizes)
        out = []
        for path, logit in zip(batch["paths"], logits):
            probs = self.segmentor.class_probabilities(logit)
            out.append({"path": path, "probs": probs, "pred": self.segmentor.decide(probs)})
        return out
