"""The shared base of the benchmark DataModules: a declarative on-disk layout, checked before any model work.

`SegmentationDataModule` finds the (image, label) pairs from its class attributes, validates everything it can
at construction, and serves the validation split to `trainer.test` and `trainer.predict` as a
`SegmentationDataset` (resized uint8 images, labels at their original size).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from .dataset import SegmentationDataset, collate
from .errors import DataError, examples
from .checks import Numerics, check_samples, checked_numerics, listing
from .labels import LabelMap, reduce_zero_label
from .loader import each_once_sampler, loader_settings
from .transforms import KeepRatioResize, A
from .vocabulary_files import load_vocabulary, resolve_names_file

__all__ = ["Scan", "SegmentationDataModule", "TifLabelDataModule"]


@dataclass
class Scan:
    """What a layout holds: the sample ids in order and, per id, the image and label paths."""

    ids: list[str]
    pairs: list[tuple[Path, Path]]
    source: str  # the split file, or the folder scanned
    missing_images: list[Path] = field(default_factory=list)
    missing_labels: list[Path] = field(default_factory=list)

    @property
    def complete(self) -> list[tuple[Path, Path]]:
        return [(img, lbl) for img, lbl in self.pairs if img.is_file() and lbl.is_file()]


class SegmentationDataModule(LightningDataModule):
    """A validation set laid out on disk, served to `trainer.test` / `trainer.predict`.

    A subclass describes its layout with class attributes: image `<root>/<image_dir>/<id><image_suffix>`,
    label `<root>/<label_dir>/<id><label_suffix>`, ids from `<root>/<split_file>` (one per line) or, when
    `split_file` is None, from every `*<image_suffix>` under `<root>/<image_dir>` (recursively, sorted by
    path). `num_classes`, `ignore_index` and `reduce_zero_label` describe the labels; `dataset_name`
    names the benchmark. Override `label_mapping()` for another mapping, `scan()` for another layout.
    """

    dataset_name: ClassVar[str] = "custom"
    title: ClassVar[str] = ""  # the name in results tables (e.g. "COCO-Object"); default: dataset_name
    num_classes: int = 0
    ignore_index: int = 255
    reduce_zero_label: ClassVar[bool] = False
    image_dir: ClassVar[str] = ""
    label_dir: ClassVar[str] = ""
    image_suffix: ClassVar[str] = ".jpg"
    label_suffix: ClassVar[str] = ".png"
    split_file: ClassVar[str | None] = None
    split_file_optional: ClassVar[bool] = False  # True: use the split file when it exists, else scan the image folder
    root_example: ClassVar[str] = "data/<dataset folder>"
    names_example: ClassVar[str] = ""
    prepare_hint: ClassVar[str] = ""
    check_label_range: bool = True
    background_name: ClassVar[str | None] = None  # shown for class 0 when its line is a list of background synonyms

    def __init__(
        self,
        root: str,
        scale: tuple[int, int],
        prob_thd: float,
        names_file: str,
        batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        crop_size: int = 336,
        stride: int = 112,
        check: bool = False,
        numerics: Numerics = "original",
    ):
        """
        Args:
            root: The dataset folder (e.g. data/VOCdevkit/VOC2012); its layout is the class's.
            scale: Keep-ratio resize bounds (long, short), mmcv's `Resize(scale, keep_ratio=True)`.
            prob_thd: Below this winning probability the prediction is class 0 (background).
            names_file: The vocabulary: a packaged name (e.g. voc21) or the path of a text file with
                one class per line (several names of a class on one line, separated by '; ').
            batch_size: Images per batch; images keep their own sizes (lists, not stacked tensors). null: 1 on a
                CPU; on a GPU 8, or 1600 // queries for large vocabularies (PC459: 3, ADE847: 1).
            num_workers: DataLoader worker processes (0 reads in the main process; null: from the CPUs on a GPU,
                0 on a CPU).
            pin_memory: Pin batches in page-locked memory for asynchronous copies to the GPU (null: on a GPU).
            crop_size: Sliding-window crop side in pixels.
            stride: Sliding-window stride in pixels.
            check: Read every image and label now, before any model is built, and report all the bad ones at once
                (unreadable, truncated, size mismatch, label values out of range), instead of stopping at the
                first one in the middle of the run. Decodes every file (about a minute per 10,000 images).
            numerics: How the model computes (linked to the segmentor): "original", the benchmark protocol, every
                input exactly as the method's original harness computes it (docs/method.md §1-§3); "defined", the
                weights' own statistics on x / 255 and no NaN from an emptied proxy-attention row.
        """
        super().__init__()
        scale = tuple(scale)
        if len(scale) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in scale):
            raise DataError(f"scale must be two positive integers (long, short), e.g. [2048, 336]; got {scale!r}.")
        if not 0.0 <= float(prob_thd) <= 1.0:
            raise DataError(f"prob_thd must be a probability in [0, 1]; got {prob_thd!r}.")
        if int(crop_size) <= 0 or int(stride) <= 0 or int(stride) > int(crop_size):
            raise DataError(f"crop_size and stride must be positive with stride <= crop_size (windows must "
                            f"cover the image); got crop_size={crop_size!r}, stride={stride!r}.")
        if (batch_size is not None and int(batch_size) < 1) or (num_workers is not None and int(num_workers) < 0):
            raise DataError(f"batch_size must be >= 1 and num_workers >= 0; got batch_size={batch_size!r}, "
                            f"num_workers={num_workers!r}.")
        self.root = str(root)
        self.scale = (int(scale[0]), int(scale[1]))
        self.prob_thd = float(prob_thd)
        self.crop_size = int(crop_size)
        self.stride = int(stride)
        self.numerics = checked_numerics(numerics)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.num_workers, self.pin_memory = num_workers, pin_memory  # None: chosen for the trainer's device
        self.dataset_name = type(self).dataset_name
        self.num_classes = int(type(self).num_classes)
        self.ignore_index, self.check_label_range = self.label_protocol()
        self.names_file = str(names_file)
        self.names_path = resolve_names_file(self.names_file)
        self.class_names: list[str] = load_vocabulary(self.names_path)
        self.check_vocabulary()
        self.scan(self.root)  # a wrong root or a missing split file fails now, before any model is built
        self.dataset: SegmentationDataset | None = None
        if check:
            self.check_files()

    def label_protocol(self) -> tuple[int, bool]:
        """(the label value that is not counted, whether other values must be class indices)."""
        return int(type(self).ignore_index), type(self).check_label_range

    def check_files(self) -> None:
        """Decode every sample; one DataError lists every bad file (the first 10 and how many more)."""
        pairs = self.find_samples(self.root)
        bad, values = check_samples(pairs, self.num_classes, self.ignore_index, self.check_label_range,
                                    self.label_mapping(), desc=f"check {self.dataset_name}")
        if bad:
            stored = f" Unexpected stored label values: {examples(sorted(values), 12)}." if values else ""
            raise DataError(f"{len(bad)} of the {len(pairs)} {self.dataset_name} samples under {self.root} cannot be used:"
                            + listing(bad) + f"\n{stored} Re-download or re-prepare these files (or remove them from "
                            "the split), then run again; `python -m datamodules.prepare check` gives the same report.")

    # ---- validation -----------------------------------------------------------------------

    def check_vocabulary(self) -> None:
        """The vocabulary must have one line per class of the dataset."""
        if len(self.class_names) != self.num_classes:
            hint = f" (the packaged `{self.names_example}` has them)" if self.names_example else ""
            raise DataError(f"The vocabulary {self.names_path} has {len(self.class_names)} class lines but "
                            f"{self.dataset_name} has {self.num_classes} classes. Set names_file to a vocabulary "
                            f"with exactly {self.num_classes} non-empty lines, one per class in label order"
                            f"{hint}; several names of one class go on one line, separated by '; '.")

    @classmethod
    def layout(cls) -> str:
        """A one-line description of the on-disk layout below `root`."""
        ids = f"the ids listed in {cls.split_file}" if cls.split_file else "every image, sorted by name"
        if cls.split_file and cls.split_file_optional:
            ids += " (or, without that file, every image, sorted by name)"
        return (f"{cls.image_dir}/<id>{cls.image_suffix} and {cls.label_dir}/<id>{cls.label_suffix} "
                f"for {ids}")

    @classmethod
    def scan(cls, root: str | os.PathLike) -> Scan:
        """The ids and (image, label) paths under `root`; raises DataError when root or split is missing."""
        root_path = Path(root).expanduser()
        if not root_path.is_dir():
            where = f"{root}" if root_path.is_absolute() else f"{root} ({root_path.absolute()})"
            raise DataError(f"The {cls.dataset_name} data folder {where} does not exist. "
                            f"Set the data's `root` (--data.init_args.root, or `root:` in the data config) to "
                            f"the folder that holds {cls.layout()}, e.g. {cls.root_example}.")
        image_dir, label_dir = root_path / cls.image_dir, root_path / cls.label_dir
        if cls.uses_split_file(root_path):
            split = root_path / cls.split_file
            if not split.is_file():
                raise DataError(f"The split file {split} of {cls.dataset_name} does not exist. `root` ({root}) "
                                f"must be the folder that holds {cls.split_file} and {cls.layout()}, e.g. "
                                f"{cls.root_example}; download or extract the complete dataset there.")
            text = split.read_text(encoding="utf-8", errors="replace")
            ids = [line.strip() for line in text.splitlines() if line.strip()]
            source = str(split)
        else:
            if not image_dir.is_dir():
                raise DataError(f"The {cls.dataset_name} image folder {image_dir} does not exist. `root` ({root}) "
                                f"must be the folder that holds {cls.layout()}, e.g. {cls.root_example}.")
            ids = []
            for folder, dirs, files in os.walk(image_dir, followlinks=True):
                dirs.sort()
                rel = Path(folder).relative_to(image_dir)
                for name in files:
                    if name.endswith(cls.image_suffix) and not name.startswith("."):
                        ids.append((rel / name[: -len(cls.image_suffix)]).as_posix())
            ids.sort()
            source = str(image_dir)
        pairs = [(image_dir / f"{i}{cls.image_suffix}", label_dir / f"{i}{cls.label_suffix}") for i in ids]
        scan = Scan(ids=ids, pairs=pairs, source=source)
        scan.missing_images = [img for img, _ in pairs if not img.is_file()]
        scan.missing_labels = [lbl for _, lbl in pairs if not lbl.is_file()]
        return scan

    @classmethod
    def uses_split_file(cls, root: str | os.PathLike) -> bool:
        """Whether the ids come from the split file (required, or optional and present) rather than a folder scan."""
        return bool(cls.split_file) and (not cls.split_file_optional or (Path(root).expanduser() / cls.split_file).is_file())

    @classmethod
    def find_samples(cls, root: str | os.PathLike) -> list[tuple[Path, Path]]:
        """Every (image, label) pair; DataError if the layout is missing, empty or incomplete."""
        scan = cls.scan(root)
        if not scan.ids:
            raise DataError(f"{scan.source} lists no {cls.dataset_name} images (expected {cls.layout()} under "
                            f"{root}). Point `root` at the complete dataset.")
        missing = scan.missing_images + scan.missing_labels
        if missing:
            hint = f" {cls.prepare_hint}" if scan.missing_labels and cls.prepare_hint else ""
            counts = " and ".join(f"{n} {what}{'s' if n > 1 else ''}" for n, what in (
                (len(scan.missing_images), "image"), (len(scan.missing_labels), "label")) if n)
            raise DataError(f"{counts} of the "
                            f"{len(scan.ids)} {cls.dataset_name} samples from {scan.source} are absent, e.g. "
                            f"{examples(missing, 3)}. Every sample needs {cls.layout()}: complete the download "
                            f"or extraction under {root}, or fix `root`.{hint}")
        return scan.pairs

    @classmethod
    def extra_labels(cls, root: str | os.PathLike, ids: Sequence[str]) -> list[Path]:
        """Label files with no image, when ids come from the image folder (a split's label folder
        normally also holds the other splits' labels, so none are reported then)."""
        if cls.uses_split_file(root):
            return []
        label_dir = Path(root) / cls.label_dir
        known, extra = set(ids), []
        for folder, dirs, files in os.walk(label_dir, followlinks=True):
            dirs.sort()
            rel = Path(folder).relative_to(label_dir)
            for name in sorted(files):
                if name.endswith(cls.label_suffix) and not name.startswith("."):
                    if (rel / name[: -len(cls.label_suffix)]).as_posix() not in known:
                        extra.append(Path(folder) / name)
        return extra

    # ---- the data -----------------------------------------------------------------------

    @classmethod
    def label_mapping(cls) -> LabelMap | None:
        """The mapping from stored label values to class indices (picklable, for DataLoader workers)."""
        return reduce_zero_label if cls.reduce_zero_label else None

    def transform(self) -> Callable[..., dict]:
        """The image transform (albumentations): mmcv's keep-ratio resize to `scale`."""
        return A.Compose([KeepRatioResize(*self.scale)])

    def setup(self, stage: str | None = None) -> None:
        """Find and validate the samples (idempotent); raises DataError before any model work."""
        self.check_vocabulary()
        if self.dataset is None:
            samples = self.find_samples(self.root)
            self.dataset = SegmentationDataset(samples, self.num_classes, self.ignore_index,
                                               transform=self.transform(), label_map=self.label_mapping(),
                                               check_range=self.check_label_range)

    def _dataloader(self) -> DataLoader:
        if self.dataset is None:
            self.setup()
        trainer = getattr(self, "trainer", None)
        sampler = each_once_sampler(self.dataset, trainer, f"{self.dataset_name} under {self.root}")
        return DataLoader(self.dataset, shuffle=False, sampler=sampler, collate_fn=collate,
                          **loader_settings(trainer, self.batch_size, self.num_workers, self.pin_memory, len(self.class_names)))

    def test_dataloader(self) -> DataLoader:
        """The validation split."""
        return self._dataloader()

    def predict_dataloader(self) -> DataLoader:
        """The validation split."""
        return self._dataloader()


class TifLabelDataModule(SegmentationDataModule):
    """Base of the CAT-Seg-prepared sets with uint16 `.tif` labels (PC459, ADE847): ignore is 65535,
    and 255 is an ordinary class.

    `legacy_ignore_255=True` reproduces the original harness instead: `ignore_index` becomes 255
    and label values >= num_classes (the 65535 pixels) pass through unvalidated. Its metric (mmseg's
    `histc` over [0, num_classes - 1]) then drops that out-of-range ground truth from G_c but still
    counts the predictions on those pixels in U_c, and class 255's ground truth is treated as ignored
    (its IoU is 0 when predicted, its Acc NaN). The model-side metric reproduces that from
    `ignore_index`; this class only exposes it and skips the range check.
    """

    ignore_index: int = 65535
    label_suffix: ClassVar[str] = ".tif"

    def __init__(self, *args: Any, legacy_ignore_255: bool = False, **kwargs: Any):
        """
        Args:
            legacy_ignore_255: Reproduce the original harness: ignore 255 (an ordinary class here)
                instead of 65535, and pass the 65535 pixels through unvalidated (see the class doc).
        """
        self.legacy_ignore_255 = bool(legacy_ignore_255)   # read by label_protocol() during the base's __init__
        super().__init__(*args, **kwargs)

    def label_protocol(self) -> tuple[int, bool]:
        return (255, False) if self.legacy_ignore_255 else super().label_protocol()
