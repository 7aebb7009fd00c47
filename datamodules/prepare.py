"""One-time label preparation and a dataset check.

    python -m datamodules.prepare coco-object data/coco_stuff164k   # *_instanceTrainIds.png
    python -m datamodules.prepare cityscapes data/cityscapes        # *_gtFine_labelTrainIds.png
    python -m datamodules.prepare check data/VOCdevkit/VOC2012 --dataset voc21

The conversions are idempotent (outputs already there are skipped unless --overwrite) and write
each file atomically (a temporary file in the same folder, then `os.replace`).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from . import DATAMODULES
from .base import SegmentationDataModule
from .checks import check_samples, listing
from .errors import DataError, examples
from .io import read_label

# COCO category ids of the 80 things (of 1..91; the 11 unused ones are absent), in COCO's order.
COCO_THING_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31,
    32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57,
    58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87,
    88, 89, 90,
)
UNLABELED = 255


def coco_object_table() -> np.ndarray:
    """Raw COCO-Stuff-164k value (COCO category id - 1; 255 unlabeled) -> COCO-Object class.

    Things (raw 0..90) -> 1..80 in COCO category order; stuff (raw 91..181) and unlabeled (255) -> 0,
    the background. Values that COCO-Stuff never uses (the 11 unused thing ids, 182..254) -> 255.
    """
    table = np.full(256, UNLABELED, dtype=np.uint8)
    table[91:182] = 0
    table[255] = 0
    for index, category_id in enumerate(COCO_THING_IDS, start=1):
        table[category_id - 1] = index
    return table


# cityscapesScripts `labels.py`: (id, trainId) of every label with an id >= 0; trainId 255 = ignored.
# (license plate, id -1, is never written into a labelIds image.)
CITYSCAPES_ID_TO_TRAINID = {
    0: 255, 1: 255, 2: 255, 3: 255, 4: 255, 5: 255, 6: 255, 7: 0, 8: 1, 9: 255, 10: 255, 11: 2, 12: 3,
    13: 4, 14: 255, 15: 255, 16: 255, 17: 5, 18: 255, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 29: 255, 30: 255, 31: 16, 32: 17, 33: 18,
}


def cityscapes_table() -> np.ndarray:
    """Cityscapes label id -> train id (19 classes, 0..18); unlabeled and unknown ids -> 255."""
    table = np.full(256, UNLABELED, dtype=np.uint8)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAINID.items():
        table[label_id] = train_id
    return table


def write_png_atomic(array: np.ndarray, path: Path) -> None:
    """Write a uint8 label map as a grayscale PNG: a temporary file beside `path`, then `os.replace`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="L").save(f, format="PNG")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def convert(jobs: Sequence[tuple[Path, Path]], table: np.ndarray, overwrite: bool, desc: str,
            expected: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[int, int, Counter]:
    """Apply `table` to every source label; returns (written, skipped, unexpected raw values)."""
    written = skipped = 0
    unexpected: Counter = Counter()
    for src, dst in tqdm(jobs, desc=desc, unit="file"):
        if dst.exists() and not overwrite:
            skipped += 1
            continue
        raw = read_label(src)
        if raw.dtype != np.uint8:
            if raw.min() < 0 or raw.max() > 255:
                raise DataError(f"The raw label {src} has values outside 0..255 ({raw.min()}..{raw.max()}); "
                                f"it is not an 8-bit {desc} map. Use the original files.")
            raw = raw.astype(np.uint8)
        if expected is not None:
            bad = ~expected(raw)
            if bad.any():
                values, counts = np.unique(raw[bad], return_counts=True)
                unexpected.update(dict(zip(values.tolist(), counts.tolist())))
        write_png_atomic(table[raw], dst)
        written += 1
    return written, skipped, unexpected


def _report(written: int, skipped: int, unexpected: Counter, what: str) -> None:
    print(f"{what}: wrote {written} file{'' if written == 1 else 's'}, skipped {skipped} already there (use --overwrite to redo).")
    if unexpected:
        values = examples([f"{v} ({n} px)" for v, n in sorted(unexpected.items())], 10)
        print(f"warning: raw values outside the documented set were written as 255 (ignore): {values}.",
              file=sys.stderr)


def prepare_coco_object(root: Path, split: str = "val2017", overwrite: bool = False) -> int:
    folder = root / "annotations" / split
    if not folder.is_dir():
        raise DataError(f"The COCO-Stuff annotation folder {folder} does not exist. ROOT must be the "
                        f"coco_stuff164k folder that holds annotations/{split}/<id>.png (the raw "
                        f"stuffthingmaps), e.g. data/coco_stuff164k.")
    sources = sorted(p for p in folder.iterdir()
                     if p.suffix == ".png" and "_" not in p.stem and not p.name.startswith("."))
    if not sources:
        raise DataError(f"{folder} holds no raw COCO-Stuff maps (<id>.png, not *_labelTrainIds.png). Extract "
                        f"stuffthingmaps_trainval2017.zip's {split} maps there, then run this again.")
    table = coco_object_table()
    documented = np.zeros(256, dtype=bool)
    documented[[c - 1 for c in COCO_THING_IDS]] = True
    documented[91:182] = True
    documented[255] = True
    jobs = [(p, p.with_name(f"{p.stem}_instanceTrainIds.png")) for p in sources]
    written, skipped, unexpected = convert(jobs, table, overwrite, "coco-object", lambda raw: documented[raw])
    _report(written, skipped, unexpected, f"COCO-Object labels in {folder}")
    return 0


def prepare_cityscapes(root: Path, split: str = "val", overwrite: bool = False) -> int:
    folder = root / "gtFine" / split
    if not folder.is_dir():
        raise DataError(f"The Cityscapes folder {folder} does not exist. ROOT must be the cityscapes folder "
                        f"that holds gtFine/{split}/<city>/*_gtFine_labelIds.png (gtFine_trainvaltest.zip), "
                        f"e.g. data/cityscapes.")
    sources = sorted(folder.rglob("*_gtFine_labelIds.png"))
    if not sources:
        raise DataError(f"{folder} holds no *_gtFine_labelIds.png files. Extract gtFine_trainvaltest.zip "
                        f"into {root}, then run this again.")
    known = np.zeros(256, dtype=bool)
    known[list(CITYSCAPES_ID_TO_TRAINID)] = True
    jobs = [(p, p.with_name(p.name.replace("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png")))
            for p in sources]
    written, skipped, unexpected = convert(jobs, cityscapes_table(), overwrite, "cityscapes",
                                           lambda raw: known[raw])
    _report(written, skipped, unexpected, f"Cityscapes train-id labels in {folder}")
    return 0


def datamodule_class(name: str) -> type[SegmentationDataModule]:
    """A benchmark name (voc21, ...) or the dotted path of a SegmentationDataModule subclass."""
    if name in DATAMODULES:
        return DATAMODULES[name]
    module_name, _, class_name = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name) if module_name else None
    except (ImportError, AttributeError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, SegmentationDataModule)):
        raise DataError(f"--dataset {name!r} is neither a benchmark ({', '.join(sorted(DATAMODULES))}) nor the "
                        f"dotted path of an importable SegmentationDataModule subclass (e.g. "
                        f"datamodules.my_dataset.MyDataModule).")
    return cls


def check(root: Path, dataset: str, legacy_ignore_255: bool = False) -> int:
    """Count the samples and report every problem the DataModule would raise on; 1 if any."""
    cls = datamodule_class(dataset)
    scan = cls.scan(root)
    problems: list[str] = []
    print(f"{dataset}: {len(scan.ids)} sample{'' if len(scan.ids) == 1 else 's'} listed by {scan.source}")
    if not scan.ids:
        problems.append(f"no samples: expected {cls.layout()}")
    if scan.missing_images:
        problems.append(f"{len(scan.missing_images)} missing image(s), e.g. {examples(scan.missing_images, 3)}")
    if scan.missing_labels:
        hint = f" {cls.prepare_hint}" if cls.prepare_hint else ""
        problems.append(f"{len(scan.missing_labels)} missing label file(s), e.g. "
                        f"{examples(scan.missing_labels, 3)}.{hint}")
    extra = cls.extra_labels(root, scan.ids)
    if extra:
        problems.append(f"{len(extra)} label file(s) without an image, e.g. {examples(extra, 3)}")

    ignore_index = 255 if legacy_ignore_255 else cls.ignore_index
    check_range = cls.check_label_range and not legacy_ignore_255
    pairs = scan.complete
    bad_files, values = check_samples(pairs, cls.num_classes, ignore_index, check_range, cls.label_mapping(),
                                      desc=f"check {dataset}")
    if bad_files:
        problems.append(f"{len(bad_files)} of {len(pairs)} samples are unreadable or have a size mismatch or "
                        f"unexpected label values:" + listing(bad_files))
    if values:
        problems.append("unexpected label values (as stored in the files) and pixel counts: "
                        + examples([f"{v}: {n}" for v, n in sorted(values.items())], 20))
    if problems:
        print(f"{dataset} under {root}: {len(problems)} problem(s):")
        for p in problems:
            print(f"- {p}")
        return 1
    print(f"{dataset} under {root}: OK ({len(pairs)} image{'' if len(pairs) == 1 else 's'}, labels 0..{cls.num_classes - 1}, "
          f"ignore {ignore_index}).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datamodules.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("coco-object", help="COCO-Object labels (*_instanceTrainIds.png) from the raw "
                                           "COCO-Stuff-164k maps: things -> 1..80, stuff and unlabeled -> 0")
    p.add_argument("root", type=Path, help="the coco_stuff164k folder (holds annotations/val2017/<id>.png)")
    p.add_argument("--split", default="val2017", help="annotation subfolder (default: val2017)")
    p.add_argument("--overwrite", action="store_true", help="rewrite outputs that already exist")

    p = sub.add_parser("cityscapes", help="*_gtFine_labelTrainIds.png from *_gtFine_labelIds.png "
                                          "(cityscapesScripts id -> trainId; unlabeled -> 255)")
    p.add_argument("root", type=Path, help="the cityscapes folder (holds gtFine/val/<city>/...)")
    p.add_argument("--split", default="val", help="gtFine subfolder (default: val)")
    p.add_argument("--overwrite", action="store_true", help="rewrite outputs that already exist")

    p = sub.add_parser("check", help="count the samples; report missing or extra label files, size "
                                     "mismatches and unexpected label values (exit code 1 if any)")
    p.add_argument("root", type=Path, help="the dataset root, as `root` in configs/data/<name>.yaml")
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help=f"the benchmark ({', '.join(sorted(DATAMODULES))}) or the dotted path of your own "
                        f"SegmentationDataModule subclass")
    p.add_argument("--legacy-ignore-255", action="store_true",
                   help="(pc459, ade847) check as the original harness reads them: ignore 255, no range check")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "coco-object":
            return prepare_coco_object(args.root, args.split, args.overwrite)
        if args.command == "cityscapes":
            return prepare_cityscapes(args.root, args.split, args.overwrite)
        return check(args.root, args.dataset, args.legacy_ignore_255)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
