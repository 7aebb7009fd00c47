"""Your own images and your own words: the DataModule behind `main.py predict`."""
from __future__ import annotations

import glob
import os
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from .checks import Numerics, check_images, checked_numerics
from .errors import DataError, examples
from .io import read_image
from .loader import each_once_sampler, loader_settings
from .transforms import A, KeepRatioResize
from .vocabulary_files import numbered_lines, refuse_repeated_classes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def parse_inline_vocabulary(text: str) -> list[str]:
    """`"sky; cloud, horse, grass"` -> `["sky; cloud", "horse", "grass"]`: commas separate classes, semicolons
    separate the synonyms of one class (written back with "; ", the vocabulary-file form)."""
    classes = []
    for part in text.split(","):
        names = [name.strip() for name in part.split(";")]
        if not part.strip() or not all(names):
            raise DataError(f"The inline vocabulary {text!r} has an empty class or name. Write classes separated by "
                            "commas and synonyms by semicolons, e.g. \"sky; cloud, horse, grass\".")
        classes.append("; ".join(names))
    return classes


def looks_like_a_file(vocabulary: str) -> bool:
    """Whether a vocabulary value that is no file names one anyway (then refused as missing: read as one inline class,
    a missing `classes.txt` would silently become a class named "classes.txt"): a text file's name; or, with no "," or
    ";" (which separate classes and synonyms), a path that starts as one (/, ~, ./, ../) or whose folder exists. So
    "AC/DC" and "sky; cloud/haze" are classes."""
    text = vocabulary.strip()
    if text.lower().endswith(".txt"):
        return True
    if "/" not in text or "," in text or ";" in text:
        return False
    return text.startswith(("/", "~", "./", "../")) or Path(text).expanduser().parent.is_dir()


def resolve_vocabulary(vocabulary: str, background: str | None = None) -> list[str]:
    """A vocabulary file (one class per line) or an inline string; `background` names become class 0. A class
    named twice (the background included) is refused, by line number in a file, by class index inline."""
    path = Path(vocabulary).expanduser()
    first = 1 if background else 0
    if path.is_file():
        numbered = numbered_lines(path)
        classes, places = [line for _, line in numbered], [f"line {number}" for number, _ in numbered]
        source = f"The vocabulary file {path}"
    elif looks_like_a_file(vocabulary):
        raise DataError(f"The vocabulary file {vocabulary} does not exist (looked for {path.absolute()}). Give an "
                        "existing file with one class per line, or the class names inline (\"sky; cloud, horse, grass\").")
    else:
        classes = parse_inline_vocabulary(vocabulary)
        places, source = [f"class {first + i}" for i in range(len(classes))], f"The vocabulary {vocabulary!r}"
    if not classes:
        raise DataError(f"The vocabulary {vocabulary!r} is empty. Give class names inline (\"sky, horse\") or a file.")
    if background:
        classes = parse_inline_vocabulary(background.replace(",", ";")) + classes
        places, source = ["class 0 (background)"] + places, f"{source} with the background {background!r}"
    refuse_repeated_classes(classes, places, source)
    return classes


def find_images(inputs: str | Sequence[str]) -> list[str]:
    """Image files from a file, a folder (recursively, sorted) or a glob; several may be given."""
    found: list[str] = []
    for item in [inputs] if isinstance(inputs, str) else inputs:
        path = Path(item).expanduser()
        if path.is_file():
            found.append(str(path))
        elif path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            matches = sorted(p for p in glob.glob(os.path.expanduser(item), recursive=True) if Path(p).is_file())
            if not matches:
                raise DataError(f"No image found at {item!r}: it is not a file, a folder or a glob that matches files. "
                                "Give an image path, a folder of images or a pattern such as 'photos/*.jpg'.")
            found += matches
    if not found:
        raise DataError(f"No images ({', '.join(IMAGE_SUFFIXES)}) under {examples(list(map(str, [inputs] if isinstance(inputs, str) else inputs)))}.")
    return found


def output_names(paths: Sequence[str]) -> dict[str, str]:
    """A distinct name per input for its output files: the file's stem where no other input has it; the stem and
    the extension where only the extensions differ ('rgb_jpg', 'rgb_png'); else the path below the inputs' common
    folder ('a__x' for a/x.jpg and b/x.jpg). No two inputs ever write the same files."""
    folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
    common = os.path.commonpath(folders) if folders else ""
    groups: dict[str, list[str]] = {}
    for p in paths:
        groups.setdefault(Path(p).stem, []).append(p)
    names = {}
    for stem, group in groups.items():
        extensions = [Path(p).suffix.lstrip(".") for p in group]
        for p, extension in zip(group, extensions):
            if len(group) == 1:
                names[p] = stem
            elif len(set(extensions)) == len(group):
                names[p] = f"{stem}_{extension}"
            else:
                names[p] = "__".join(Path(os.path.relpath(os.path.abspath(p), common)).with_suffix("").parts)
    seen: Counter = Counter()
    for p in paths:                          # whatever still coincides (the same file given twice, ...): numbered
        seen[names[p]] += 1
        if seen[names[p]] > 1:
            names[p] = f"{names[p]}_{seen[names[p]]}"
    return names


class ImageFolderDataset(Dataset):
    """Item: `{"image": uint8 [3, h, w] RGB (resized), "ori_size": (H, W), "path": str, "name": output name,
    "original": uint8 [H, W, 3] RGB numpy}` (`original`: the pixels as decoded, 16-bit files >> 8, EXIF applied,
    which the picture writers show, so that an overlay shows what the model saw; a numpy array: Lightning leaves it
    on the host), or, for a file that cannot be read, `{"path": str, "name": output name, "error": why}` (the run
    goes on without it)."""

    def __init__(self, paths: Sequence[str], transform: Any | None):
        self.paths, self.transform = list(paths), transform
        self.names = output_names(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            original = read_image(self.paths[index])
        except DataError as exc:
            return {"path": self.paths[index], "name": self.names[self.paths[index]], "error": str(exc)}
        image = original if self.transform is None else self.transform(image=original)["image"]
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), "ori_size": original.shape[:2],
                "path": self.paths[index], "name": self.names[self.paths[index]], "original": original}


def collate_images(items: Sequence[dict[str, Any]]) -> dict[str, list]:
    """The readable items as lists (sizes differ); `skipped`: `{"path", "reason"}` of those that could not be read."""
    good = [i for i in items if "error" not in i]
    return {"images": [i["image"] for i in good], "ori_sizes": [i["ori_size"] for i in good], "paths": [i["path"] for i in good],
            "names": [i["name"] for i in good], "originals": [i["original"] for i in good],
            "skipped": [{"path": i["path"], "reason": i["error"]} for i in items if "error" in i]}


class ImageFolderDataModule(LightningDataModule):
    """Images to segment with a vocabulary of your own; predictions come back at each image's size."""

    dataset_name = "images"
    ignore_index = 255

    def __init__(
        self,
        inputs: str | list[str],
        vocabulary: str,
        background: str | None = None,
        prob_thd: float = 0.0,
        scale: tuple[int, int] | None = (2048, 336),
        crop_size: int = 336,
        stride: int = 112,
        batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        check: bool = False,
        numerics: Numerics = "defined",
    ):
        """
        Args:
            inputs: An image file, a folder of images (searched recursively), a glob such as 'photos/*.jpg', or a list of them.
            vocabulary: Class names inline ("sky; cloud, horse, grass": commas separate classes, semicolons synonyms) or a file with one class per line.
            background: Names of a background class put first as class 0 (e.g. "sky; wall; floor"); pixels below prob_thd also become class 0.
            prob_thd: Below this winning probability the prediction is class 0.
            scale: Keep-ratio resize bounds (long, short) before segmentation (null: the image as it is); predictions are resized back to the image.
            crop_size: Sliding-window crop side in pixels.
            stride: Sliding-window stride in pixels.
            batch_size: Images per batch (sizes may differ; null: 1 on a CPU, up to 8 on a GPU).
            num_workers: DataLoader worker processes (null: from the CPUs on a GPU, 0 on a CPU).
            pin_memory: Pin batches in page-locked memory (null: on a GPU).
            check: Decode every input now, before any model is built, and report all the bad ones at once (without
                it, the bad ones are skipped, listed at the end of the run and in skipped.json, and the run exits 1).
            numerics: How the model computes (linked to the segmentor): "defined", the weights' own statistics and a
                defined result where the original gives NaN; "original", as the method's original harness computes
                (docs/method.md §1-§3).
        """
        super().__init__()
        self.paths = find_images(inputs)
        self.class_names = resolve_vocabulary(vocabulary, background)
        self.background_name = "background" if background else None   # shown for class 0 in results and pictures
        self.prob_thd, self.crop_size, self.stride = float(prob_thd), int(crop_size), int(stride)
        self.scale = None if scale is None else (int(scale[0]), int(scale[1]))
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.numerics = checked_numerics(numerics)
        if check:
            check_images(self.paths)

    def predict_dataloader(self) -> DataLoader:
        transform = None if self.scale is None else A.Compose([KeepRatioResize(*self.scale)])
        dataset = ImageFolderDataset(self.paths, transform)
        sampler = each_once_sampler(dataset, self.trainer, "The input")   # each image segmented by one process
        return DataLoader(dataset, shuffle=False, sampler=sampler, collate_fn=collate_images,
                          **loader_settings(self.trainer, self.batch_size, self.num_workers, self.pin_memory, len(self.class_names)))

    def test_dataloader(self) -> DataLoader:
        raise DataError("ImageFolderDataModule has images but no ground truth, so it cannot be evaluated: use "
                        "`main.py predict` with it, or a benchmark config (configs/data/*.yaml) with `test`.")
