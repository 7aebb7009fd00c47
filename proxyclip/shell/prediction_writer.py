"""Writes what `predict` produces: per image a label PNG, a colour overlay with legend, a legend JSON."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image, ImageOps

from .fonts import font_note
from .visualize import overlay_with_legend, palette


class PredictionWriter(BasePredictionWriter):
    """Per input image `<name>_labels.png` (class indices), `<name>_overlay.png` (overlay | legend),
    `<name>_legend.json` and, with `save_probabilities`, `<name>_probs.npz` ([C, H, W] float16). `<name>` is the
    file's stem, made distinct where inputs share one (see `datamodules.image_folder.output_names`).

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

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._written = 0
        note = font_note(self.legend_words(pl_module.segmentor.class_names))
        if note and trainer.is_global_zero:
            print(note, file=sys.stderr, flush=True)

    @staticmethod
    def legend_words(class_names: Sequence[str]) -> list[str]:
        """The user's own words, every synonym, also for class 0."""
        return [line.replace("; ", " / ") for line in class_names]

    @staticmethod
    def original_image(path: str) -> np.ndarray:
        """An input as PIL reads it, for batches that do not carry the decoded pixels (`originals`)."""
        return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: list[dict[str, Any]],
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        folder = self.folder(trainer)
        names = pl_module.segmentor.class_names
        colours = palette(len(names))
        words = self.legend_words(names)
        # the pixels the model saw, as the data side decoded them (16-bit files >> 8, EXIF applied), when it sends them
        originals = batch.get("originals") if isinstance(batch, dict) else None
        for position, item in enumerate(prediction):
            stem = item.get("name") or Path(item["path"]).stem  # distinct per input (photos/rgb.jpg vs photos/rgb.png)
            pred = item["pred"].cpu().numpy()
            label_dtype = np.uint8 if len(names) <= 256 else np.uint16
            Image.fromarray(pred.astype(label_dtype)).save(folder / f"{stem}_labels.png")
            image = originals[position] if originals is not None else self.original_image(item["path"])
            Image.fromarray(overlay_with_legend(image, pred, words, colours)).save(folder / f"{stem}_overlay.png")
            counts = np.bincount(pred.ravel(), minlength=len(names))
            legend = [{"index": i, "name": n, "rgb": colours[i].tolist(), "pixels": int(counts[i])} for i, n in enumerate(names)]
            (folder / f"{stem}_legend.json").write_text(json.dumps({"image": str(item["path"]), "classes": legend}, indent=2))
            if self.save_probabilities:
                np.savez_compressed(folder / f"{stem}_probs.npz", probs=item["probs"].to(torch.float16).cpu().numpy(), class_names=np.array(names))
            self._written += 1
            # the trainer keeps what predict_step returned: keep it small (labels on the CPU, no probabilities)
            item.pop("probs")
            item["pred"] = item["pred"].to("cpu", torch.int16 if len(names) < 2**15 else torch.int32)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        total = len(getattr(trainer.datamodule, "paths", [])) or self._written
        if trainer.is_global_zero:
            print(f"Segmented {total} image{'' if total == 1 else 's'}: files in {self._folder}/ (<name>_labels.png, <name>_overlay.png, "
                  f"<name>_legend.json{', <name>_probs.npz' if self.save_probabilities else ''})", flush=True)
