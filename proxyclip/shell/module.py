"""The LightningModule: evaluation (`test`) and prediction (`predict`) of a built segmentor; no training.

It computes; the files are written by callbacks (`ResultWriter` for `test`, `PredictionWriter` for `predict`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from ..errors import ProxyCLIPError
from ..method.segmentor import TrainingFreeSegmentor
from ..vocabulary import display_names
from .loop_timer import LoopTimer, run_timing
from .metric import SegmentationMetric
from .results import build_report

_TRAINING_FREE = "ProxyCLIP is training-free: there is nothing to fit. Use `test` (evaluate a benchmark) or `predict` (segment images)."


class ProxyCLIPModule(L.LightningModule):
    """Wraps a built `TrainingFreeSegmentor` for Lightning. The benchmark's vocabulary, `prob_thd`, crop and stride
    reach the segmentor itself (linked from the DataModule when the CLI builds it); what only results need is here.

    Args:
        segmentor: the built segmentor (LightningCLI builds it from `model.segmentor` in the YAML).
        background_name: how results and pictures call class 0 (linked; default: its line's first name).
        ignore_index: label value that is not counted (linked from the DataModule).
        dataset_name: name written into the results.
        output_dir: where results go (default: the trainer's log dir).
        num_panels: during `test`, save image | ground truth | prediction panels of the first this many images.
    """

    def __init__(
        self,
        segmentor: TrainingFreeSegmentor,
        background_name: str | None = None,
        ignore_index: int = 255,
        dataset_name: str = "",
        output_dir: str | None = None,
        num_panels: int = 8,
    ) -> None:
        super().__init__()
        self.segmentor = segmentor
        self.background_name, self.ignore_index, self.dataset_name = background_name, ignore_index, dataset_name
        self.output_dir, self.num_panels = output_dir, num_panels
        self.metric = SegmentationMetric(max(segmentor.num_classes, 1), ignore_index)
        self.report: dict[str, Any] | None = None
        self.timing: dict[str, float] = {}
        self._results_dir: Path | None = None

    # --- no training: ProxyCLIP is training-free --------------------------------------------------
    def training_step(self, *args: Any, **kwargs: Any) -> None:
        raise ProxyCLIPError(_TRAINING_FREE)

    def configure_optimizers(self) -> None:
        raise ProxyCLIPError(_TRAINING_FREE)

    # --- where results go -------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        # `trainer.log_dir` is a collective under DDP (rank 0 broadcasts its folder), so it is resolved here, on
        # every rank at once, and never inside a branch that only rank 0 takes (that deadlocks the others).
        self._results_dir = Path(self.output_dir or self.trainer.log_dir or self.trainer.default_root_dir)

    def results_dir(self) -> Path:
        """Where results go: `output_dir`, else the trainer's log dir (resolved in `setup`)."""
        if self._results_dir is None:
            raise RuntimeError("results_dir() is known once the trainer has called setup()")
        return self._results_dir

    def class_labels(self) -> list[str]:
        """Short class names for tables and pictures."""
        return display_names(self.segmentor.class_names, self.background_name)

    # --- evaluation ---------------------------------------------------------------------------------
    def on_test_start(self) -> None:
        if self.metric.num_classes != self.segmentor.num_classes:
            self.metric = SegmentationMetric(self.segmentor.num_classes, self.ignore_index).to(self.device)
        self.metric.reset()
        # The vocabulary is encoded here, timed apart from the loop (it would otherwise land in the first batch).
        start = time.perf_counter()
        self.segmentor.text_embeddings()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timing = {"text_encoding_s": time.perf_counter() - start}
        self._timer = LoopTimer(self.device)

    def on_test_epoch_start(self) -> None:
        self._timer.start()

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._timer.batch_start()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> list[torch.Tensor]:
        """Per image the label map [H, W] at its ground truth's size, counted by the metric (and returned for panels),
        with the pixels whose logits are NaN (class 0, as the original decides them: docs/method.md §3.4)."""
        labels = batch["labels"]
        decided = self.segmentor.labels_and_nan_masks(batch["images"], [tuple(label.shape[-2:]) for label in labels],
                                                      batch.get("paths"))
        for (pred, nan), label in zip(decided, labels):
            self.metric.update(pred, label, nan)
        return [pred for pred, _ in decided]

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._timer.batch_end()

    def on_test_epoch_end(self) -> None:
        own, own_images = self._timer.stop(), int(self.metric.num_images)   # this process's loop and images
        metrics = self.metric.compute()  # sums the counts (and images) of every process
        # the slowest process's loop and the largest peak memory are the run's (collectives: every process is here, as for compute())
        longest, peak = (self.trainer.strategy.reduce(torch.tensor(float(own[key]), dtype=torch.float64, device=self.device),
                                                      reduce_op="max") for key in ("test_loop_s", "peak_memory_bytes"))
        for key in ("aAcc", "mIoU", "mAcc"):
            # Already global. Logged once, by rank 0; sync_dist=True with rank_zero_only=True reduces nothing (no
            # collective) and tells Lightning so, which it otherwise warns about under DDP.
            self.log(key, float(metrics[key]) * 100.0, rank_zero_only=True, sync_dist=True)
        self.report = build_report(metrics, self.segmentor.class_names, self.dataset_name, None, self.class_labels())
        self.report["numerics"] = self.segmentor.numerics
        # the method and its own options as they ran, defaults filled in (the config shows only those given)
        self.report["method"] = self.segmentor.method
        self.report["method_options"] = dict(self.segmentor.method_options)
        self.report["pixel_statistics"] = {name: list(value) for name, value in self.segmentor.pixel_statistics.items()}
        self.report["timing"] = run_timing(own, own_images, int(metrics["num_images"]), float(longest),
                                           self.trainer.world_size, self.timing["text_encoding_s"], int(peak), self._timer)

    # --- prediction ---------------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """Per image: path, output name, class probabilities [C, H, W] and labels [H, W] at the original size.
        Inputs that could not be read are not in `images` (the batch's `skipped` lists them, for the writer)."""
        if not batch["images"]:
            return []
        sizes = batch.get("ori_sizes") or [tuple(image.shape[-2:]) for image in batch["images"]]
        names = batch.get("names") or [Path(path).stem for path in batch["paths"]]
        decided = self.segmentor.predict_batch(batch["images"], sizes, batch["paths"])
        return [{"path": path, "name": name, "probs": probs, "pred": pred}
                for path, name, (probs, pred) in zip(batch["paths"], names, decided)]
