"""Writes what `predict` produces: per image a label PNG, a colour overlay with legend, a legend JSON; and the list
of the inputs that could not be read."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image, ImageOps

from .fonts import font_note
from .visualize import overlay_with_legend, palette

# `<name><suffix>` per input, in the order they are written: the legend last, so an input with a legend is complete.
OUTPUT_SUFFIXES = ("_labels.png", "_overlay.png", "_probs.npz", "_legend.json")
SKIPPED_FILE = "skipped.json"   # the inputs that could not be read: [{"path": ..., "reason": ...}]
SHOWN_SKIPPED = 50              # listed at the end of the run; the file has them all


def output_files(name: str) -> list[str]:
    """The files `predict` may write for the input whose output name is `name`."""
    return [f"{name}{suffix}" for suffix in OUTPUT_SUFFIXES]


class PredictionWriter(BasePredictionWriter):
    """Per input image `<name>_labels.png` (class indices), `<name>_overlay.png` (overlay | legend),
    `<name>_legend.json` and, with `save_probabilities`, `<name>_probs.npz` ([C, H, W] float16). `<name>` is the
    file's stem, made distinct where inputs share one (see `datamodules.image_folder.output_names`). Inputs that
    cannot be read are skipped, the others segmented; the skipped ones are listed at the end of the run and in
    `skipped.json`.

    Args:
        output_dir: folder for the files (default: `<log dir>/predictions`).
        save_probabilities: also write the per-class probability maps.
    """

    def __init__(self, output_dir: str | None = None, save_probabilities: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir, self.save_probabilities = output_dir, save_probabilities
        self.location: Path | None = None          # the folder the files go to, once the trainer has called `setup`
        self.skipped: list[dict[str, str]] = []    # every process's, once the loop has ended

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # `trainer.log_dir` is a collective under DDP: resolved once here, on every rank together, and not per
        # batch (ranks may hold different numbers of batches, so a per-batch broadcast would deadlock).
        self.location = Path(self.output_dir or Path(trainer.log_dir or ".") / "predictions")

    def _made_location(self) -> Path:
        """`location`, created if need be (the first file of the run creates it)."""
        self.location.mkdir(parents=True, exist_ok=True)
        return self.location

    def complete_outputs(self, names: Sequence[str]) -> int:
        """How many of the inputs named `names` have all their files in the folder (their legend is written last)."""
        if self.location is None:
            return 0
        return sum((self.location / f"{name}_legend.json").is_file() for name in names)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._written, self._skipped, self.skipped = 0, [], []
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
        self._skipped += batch.get("skipped", []) if isinstance(batch, dict) else []
        if not prediction:
            return
        folder = self._made_location()
        names = pl_module.segmentor.class_names
        colours = palette(len(names))
        words = self.legend_words(names)
        # the pixels the model saw, as the data side decoded them (16-bit files >> 8, EXIF applied), when it sends them
        originals = batch.get("originals") if isinstance(batch, dict) else None
        for position, item in enumerate(prediction):
            stem = item.get("name") or Path(item["path"]).stem  # distinct per input (photos/rgb.jpg vs photos/rgb.png)
            try:
                image = originals[position] if originals is not None else self.original_image(item["path"])
                self.write_one(folder, stem, item, image, names, words, colours)
            except BaseException:                               # Ctrl-C or a failure: no input is left half-written
                if not (folder / f"{stem}_legend.json").is_file():  # the legend appears last and whole: then it is done
                    for file in [*output_files(stem), f".{stem}_legend.json.partial"]:
                        (folder / file).unlink(missing_ok=True)
                raise
            self._written += 1
            # the trainer keeps what predict_step returned: keep it small (labels on the CPU, no probabilities)
            item.pop("probs")
            item["pred"] = item["pred"].to("cpu", torch.int16 if len(names) < 2**15 else torch.int32)

    def write_one(self, folder: Path, stem: str, item: dict[str, Any], image: np.ndarray, names: list[str],
                  words: list[str], colours: np.ndarray) -> None:
        """The files of one input (`image`: its pixels [H, W, 3] uint8 for the overlay), in the order of OUTPUT_SUFFIXES."""
        pred = item["pred"].cpu().numpy()
        label_dtype = np.uint8 if len(names) <= 256 else np.uint16
        Image.fromarray(pred.astype(label_dtype)).save(folder / f"{stem}_labels.png")
        Image.fromarray(overlay_with_legend(image, pred, words, colours)).save(folder / f"{stem}_overlay.png")
        if self.save_probabilities:
            np.savez_compressed(folder / f"{stem}_probs.npz", probs=item["probs"].to(torch.float16).cpu().numpy(),
                                class_names=np.array(names))
        counts = np.bincount(pred.ravel(), minlength=len(names))
        legend = [{"index": i, "name": n, "rgb": colours[i].tolist(), "pixels": int(counts[i])} for i, n in enumerate(names)]
        # written aside and renamed: a legend on disk is always whole, so its presence means the input is complete
        partial = folder / f".{stem}_legend.json.partial"
        partial.write_text(json.dumps({"image": str(item["path"]), "classes": legend}, indent=2))
        os.replace(partial, folder / f"{stem}_legend.json")

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        written, skipped = [self._written], self._skipped
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():   # every rank reaches this
            gathered: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(gathered, (self._written, self._skipped))
            written, skipped = [w for w, _ in gathered], [s for _, rank in gathered for s in rank]
        self.skipped = skipped                     # each input is read by one process (the data's sampler)
        paths = getattr(trainer.datamodule, "paths", [])
        total = sum(written)                       # what was written, counted where it was written
        if not trainer.is_global_zero:
            return
        folder = self._made_location()
        print(f"Segmented {total} image{'' if total == 1 else 's'}: files in {folder}/ (<name>_labels.png, <name>_overlay.png, "
              f"<name>_legend.json{', <name>_probs.npz' if self.save_probabilities else ''})", flush=True)
        if self.skipped:
            (folder / SKIPPED_FILE).write_text(json.dumps(self.skipped, indent=2))
            shown = "".join(f"\n  - {item['reason']}" for item in self.skipped[:SHOWN_SKIPPED])
            more = f"\n  - ... and {len(self.skipped) - SHOWN_SKIPPED} more" if len(self.skipped) > SHOWN_SKIPPED else ""
            print(f"error: {len(self.skipped)} of the {len(paths) or 'given'} inputs could not be read and were skipped "
                  f"(all of them are listed in {folder / SKIPPED_FILE}); every other input was segmented. Replace or "
                  f"remove these files:{shown}{more}", file=sys.stderr, flush=True)
