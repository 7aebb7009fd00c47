"""Writes what `predict` produces: per image a label PNG, a colour overlay with legend, a legend JSON."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image, ImageOps

from .visualize import overlay_with_legend, palette


class PredictionWriter(BasePredictionWriter):
    """Per input image `<stem>_labels.png` (class indices), `<stem>_overlay.png` (overlay | legend),
    `<stem>_legend.json` and, with `save_probabilities`, `<stem>_probs.npz` ([C, H, W] float16).

    Args:
        output_dir: folder for the files (default: `<log dir>/predictions`).
        save_probabilities: also write the per-class probability maps.
    """

    def __init__(self, output_dir: str | None = None, save_probabilities: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir, self.save_probabilities = output_dir, save_probabilities

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # `trainer.log_dir` is a collective under DDP: resolved once here, on every rank together, and not per
        # batch (ranks may hold different numbers of batches, so a per-batch broadcast would deadlock).
        self._folder = Path(self.output_dir or Path(trainer.log_dir or ".") / "predictions")

    def folder(self, trainer: Trainer) -> Path:
        self._folder.mkdir(parents=True, exist_ok=True)
        return self._folder

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: list[dict[str, Any]],
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        folder = self.folder(trainer)
        names = pl_module.segmentor.class_names
        for item in prediction:
            stem = Path(item["path"]).stem
            pred = item["pred"].cpu().numpy()
            label_dtype = np.uint8 if len(names) <= 256 else np.uint16
            Image.fromarray(pred.astype(label_dtype)).save(folder / f"{stem}_labels.png")
            image = np.asarray(ImageOps.exif_transpose(Image.open(item["path"])).convert("RGB"))  # as OpenCV reads it
            Image.fromarray(overlay_with_legend(image, pred, pl_module.class_labels())).save(folder / f"{stem}_overlay.png")
            colours = palette(len(names))
            counts = np.bincount(pred.ravel(), minlength=len(names))
            legend = [{"index": i, "name": n, "rgb": colours[i].tolist(), "pixels": int(counts[i])} for i, n in enumerate(names)]
            (folder / f"{stem}_legend.json").write_text(json.dumps({"image": str(item["path"]), "classes": legend}, indent=2))
            if self.save_probabilities:
                np.savez_compressed(folder / f"{stem}_probs.npz", probs=item["probs"].to(torch.float16).cpu().numpy(), class_names=np.array(names))
            # the trainer keeps what predict_step returned: keep it small (labels on the CPU, no probabilities)
            item.pop("probs")
            item["pred"] = item["pred"].to("cpu", torch.int16 if len(names) < 2**15 else torch.int32)
