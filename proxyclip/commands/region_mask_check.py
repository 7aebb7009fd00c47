"""CorrCLIP's region masks, checked before any model is built: every image's `<image stem>.npz` in
`method_kwargs.instance_mask_path` present, readable and of the image's size, and every bad one listed at once.

The method reads an image's mask only when the run reaches that image (proxyclip/methods/corrclip/block.py, `region_mask`). Without
this check, a folder that lacks one mask, or holds a damaged one or one of another size, stopped `test` there (exit 2,
no results kept) and named only that one. The option belongs to the method and the images to the data; the CLI sees
both, so the check lives here and runs from `before_instantiate_classes`. It runs whenever a folder is given, not only
with `--data.init_args.check true`: one bad mask stops the whole run.

Each mask is read whole with the run's own reader (sam2_masks.load_instance_mask), so a truncated or corrupt file
shows here. Its size is compared with the size the run compares it with (`ImageSource.out_size`). For a benchmark that
is the label map's size, read from its header; the data's own checks make it the image's. For `predict`'s own images
it is the image as decoded, EXIF orientation applied. The files are read in threads: zlib and OpenCV release the GIL.
"""
from __future__ import annotations

import importlib
import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

from PIL import Image
from tqdm import tqdm

from datamodules import DATAMODULES, DataError
from datamodules.checks import listing
from datamodules.image_folder import find_images
from datamodules.io import read_image, read_label

from ..errors import ProxyCLIPError
from proxyclip.methods.corrclip.sam2_masks import INSTALL, UnusableMask, load_instance_mask, mask_path
from .command_line import get
from .entry_points import launch_rank

Size = Callable[[], Optional[tuple[int, int]]]   # the (H, W) an image's mask must have; None: the data's to refuse
MISSING, UNREADABLE, WRONG_SIZE = "missing", "unreadable", "of the wrong size"
THREADS = 8


def mask_folder(config: Any) -> str | None:
    """The folder of region masks the run reads; None for another method, or when SAM 2 makes the masks."""
    segmentor = get(config, "model.segmentor.init_args")
    options = get(segmentor, "method_kwargs") or {}
    if get(segmentor, "method") != "corrclip" or get(options, "mask_generator") is not None:
        return None
    folder = get(options, "instance_mask_path")
    return None if folder is None else os.fspath(folder)


def label_size(path: Path) -> tuple[int, int] | None:
    """(H, W) of a label map as read_label reads it (PIL, no EXIF), from its header; None when it cannot be read."""
    try:
        with Image.open(path) as label:
            return label.height, label.width
    except Exception:  # noqa: BLE001 - PIL raises many kinds; read_label has the OpenCV fallback and the error
        try:
            return tuple(read_label(path).shape[:2])
        except DataError:
            return None


def decoded_size(path: str) -> tuple[int, int] | None:
    """(H, W) of an input image as the run decodes it (EXIF applied); None when it cannot be read (predict skips it)."""
    try:
        return tuple(read_image(path).shape[:2])
    except DataError:
        return None


def images_and_sizes(data: Any, folder: str) -> tuple[list[tuple[str, Size]], str] | None:
    """Per image of the data config (class_path, init_args): its path and the size its mask must have; and the
    command that makes the masks. None when the images cannot be listed now (the DataModule then says why)."""
    module, _, name = str(get(data, "class_path") or "").rpartition(".")
    init_args = get(data, "init_args")
    try:
        cls = getattr(importlib.import_module(module), name)
        if hasattr(init_args, "inputs"):                                   # ImageFolderDataModule: predict's images
            inputs = [init_args.inputs] if isinstance(init_args.inputs, str) else list(init_args.inputs)
            make = f"proxyclip-masks --images {shlex.join(map(str, inputs))} --output {shlex.quote(folder)}"
            return [(path, partial(decoded_size, path)) for path in find_images(inputs)], make
        root = getattr(init_args, "root", None)
        if hasattr(cls, "scan") and root:                                   # a benchmark: its image and label pairs
            config = f"configs/{cls.dataset_name}.yaml" if cls in DATAMODULES.values() else "<your data config>"
            make = f"proxyclip-masks --config {config} --root {shlex.quote(str(root))} --output {shlex.quote(folder)}"
            # an absent image or label is the data's to refuse (find_samples), before any image is segmented
            return [(str(image), partial(label_size, label)) for image, label in cls.scan(root).pairs
                    if image.is_file() and label.is_file()], make
    except (DataError, ImportError, AttributeError, ValueError):
        pass
    return None


def mask_problem(folder: str, image: str, size: Size) -> tuple[str, str] | None:
    """(kind, line) for a mask that cannot be used, None for a good one."""
    path = mask_path(folder, image)
    if not path.is_file():
        return MISSING, f"{path.name} is absent (the mask of {image})"
    try:
        mask = load_instance_mask(path)
    except UnusableMask as exc:
        return UNREADABLE, f"{path.name} {exc}"
    expected = size()
    if expected is not None and tuple(mask.shape) != tuple(expected):
        return WRONG_SIZE, (f"{path.name} is {mask.shape[0]}x{mask.shape[1]} (HxW) but its image {image} is "
                            f"{expected[0]}x{expected[1]}")
    return None


def where(folder: str) -> str:
    path = Path(folder).expanduser()
    return folder if path.is_absolute() else f"{folder} ({path.absolute()})"


def check_region_masks(config: Any) -> None:
    """Raise one ProxyCLIPError that lists every image's mask that is absent, unreadable or of another size than the
    image, when the run's method is CorrCLIP with a mask folder and its images can be listed now."""
    folder = mask_folder(config)
    found = None if folder is None else images_and_sizes(get(config, "data"), folder)
    if found is None:
        return
    images, make = found
    if not Path(folder).expanduser().is_dir():
        raise ProxyCLIPError(f"The region-mask folder {where(folder)} (CorrCLIP's method_kwargs.instance_mask_path) "
                             f"does not exist or is not a folder; it must hold one <image stem>.npz per image. "
                             f"{fix(make, False)}")
    with ThreadPoolExecutor(max_workers=min(THREADS, os.cpu_count() or 1)) as pool:
        results = list(tqdm(pool.map(lambda item: mask_problem(folder, *item), images), total=len(images),
                            desc="check region masks", unit="mask", disable=launch_rank() != 0))
    # the files to delete first, then the missing ones (the listing shows the first 10 of them)
    order = (UNREADABLE, WRONG_SIZE, MISSING)
    bad = sorted((problem for problem in results if problem is not None), key=lambda problem: order.index(problem[0]))
    if bad:
        counts = ", ".join(f"{n} {kind}" for kind in order if (n := sum(k == kind for k, _ in bad)))
        raise ProxyCLIPError(
            f"{len(bad)} of the {len(images)} region masks CorrCLIP would read from {where(folder)} "
            f"(method_kwargs.instance_mask_path: <image stem>.npz with the key instance_mask, the image's size) cannot "
            f"be used ({counts}), checked before any model is built:" + listing([line for _, line in bad])
            + f"\n{fix(make, bad[0][0] != MISSING)}")


def fix(make: str, delete: bool) -> str:
    """The ways to a folder that holds this data's masks (proxyclip-masks skips the masks already there)."""
    first = "; it makes only those not there yet, so delete the unreadable and wrong-size files first" if delete else ""
    return (f"Make the masks with `{make}` ({INSTALL} first{first}), or extract the original's published "
            "region_masks.zip there (docs/region_masks.md); or set method_kwargs.instance_mask_path to the folder "
            "that holds this data's masks.")
