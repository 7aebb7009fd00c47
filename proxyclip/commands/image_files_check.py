"""Files a method reads one per image (`LastBlock.image_files`: CorrCLIP's region masks), checked before any model
is built: every image's file present, readable and of the image's size, and every bad one listed at once.

The method reads an image's file only when the run reaches that image. The option belongs to the method and the
images to the data; the CLI sees both, so the check lives here and runs from `before_instantiate_classes`. It runs
whenever the method names a folder, not only with `--data.init_args.check true`: one bad file stops the whole run.

Each file is read whole with the run's own reader (`ImageFiles.read`), so a truncated or corrupt file shows here.
Its size is compared with the size the run compares it with (`ImageSource.out_size`). For a benchmark that is the
label map's size, read from its header; the data's own checks make it the image's. For `predict`'s own images it is
the image as decoded, EXIF orientation applied. The files are read in threads: zlib and OpenCV release the GIL.
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
from ..method.last_block import LAST_BLOCKS
from ..method.last_block.image_files import ImageFiles
from .command_line import get
from .entry_points import launch_rank

Size = Callable[[], Optional[tuple[int, int]]]   # the (H, W) an image's mask must have; None: the data's to refuse
MISSING, UNREADABLE, WRONG_SIZE = "missing", "unreadable", "of the wrong size"
THREADS = 8


def image_files_of(config: Any) -> ImageFiles | None:
    """The files the run's method reads one per image under its options; None for a method that reads none."""
    segmentor = get(config, "model.segmentor.init_args")
    method = get(segmentor, "method")
    if method not in LAST_BLOCKS:
        return None                                           # the model's own checks name an unknown method
    options = get(segmentor, "method_kwargs") or {}
    return LAST_BLOCKS[method].image_files(dict(options) if isinstance(options, dict) else dict(vars(options)))


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


def images_and_sizes(data: Any, folder: str, maker: str) -> tuple[list[tuple[str, Size]], str] | None:
    """Per image of the data config (class_path, init_args): its path and the size its file must have; and the
    command (`maker`) that makes the files. None when the images cannot be listed now (the DataModule then says why)."""
    module, _, name = str(get(data, "class_path") or "").rpartition(".")
    init_args = get(data, "init_args")
    try:
        cls = getattr(importlib.import_module(module), name)
        if hasattr(init_args, "inputs"):                                   # ImageFolderDataModule: predict's images
            inputs = [init_args.inputs] if isinstance(init_args.inputs, str) else list(init_args.inputs)
            make = f"{maker} --images {shlex.join(map(str, inputs))} --output {shlex.quote(folder)}"
            return [(path, partial(decoded_size, path)) for path in find_images(inputs)], make
        root = getattr(init_args, "root", None)
        if hasattr(cls, "scan") and root:                                   # a benchmark: its image and label pairs
            config = f"configs/{cls.dataset_name}.yaml" if cls in DATAMODULES.values() else "<your data config>"
            make = f"{maker} --config {config} --root {shlex.quote(str(root))} --output {shlex.quote(folder)}"
            # an absent image or label is the data's to refuse (find_samples), before any image is segmented
            return [(str(image), partial(label_size, label)) for image, label in cls.scan(root).pairs
                    if image.is_file() and label.is_file()], make
    except (DataError, ImportError, AttributeError, ValueError):
        pass
    return None


def file_problem(files: ImageFiles, image: str, size: Size) -> tuple[str, str] | None:
    """(kind, line) for an image's file that cannot be used, None for a good one."""
    path = files.path_of(files.folder, image)
    short = files.noun.split()[-1]
    if not path.is_file():
        return MISSING, f"{path.name} is absent (the {short} of {image})"
    try:
        array = files.read(path)
    except files.unusable as exc:
        return UNREADABLE, f"{path.name} {exc}"
    expected = size()
    if expected is not None and tuple(array.shape) != tuple(expected):
        return WRONG_SIZE, (f"{path.name} is {array.shape[0]}x{array.shape[1]} (HxW) but its image {image} is "
                            f"{expected[0]}x{expected[1]}")
    return None


def where(folder: str) -> str:
    path = Path(folder).expanduser()
    return folder if path.is_absolute() else f"{folder} ({path.absolute()})"


def check_image_files(config: Any) -> None:
    """Raise one ProxyCLIPError that lists every image's file that is absent, unreadable or of another size than the
    image, when the run's method reads files from a folder and the images can be listed now."""
    files = image_files_of(config)
    found = None if files is None else images_and_sizes(get(config, "data"), files.folder, files.maker)
    if found is None:
        return
    images, make = found
    if not Path(files.folder).expanduser().is_dir():
        raise ProxyCLIPError(f"The {files.noun.replace(' ', '-')} folder {where(files.folder)} ({files.owner}'s "
                             f"{files.option}) does not exist or is not a folder; it must hold one {files.per_image} "
                             f"per image. {files.remedy(make, False)}")
    with ThreadPoolExecutor(max_workers=min(THREADS, os.cpu_count() or 1)) as pool:
        results = list(tqdm(pool.map(lambda item: file_problem(files, *item), images), total=len(images),
                            desc=f"check {files.noun}s", unit=files.noun.split()[-1], disable=launch_rank() != 0))
    # the files to delete first, then the missing ones (the listing shows the first 10 of them)
    order = (UNREADABLE, WRONG_SIZE, MISSING)
    bad = sorted((problem for problem in results if problem is not None), key=lambda problem: order.index(problem[0]))
    if bad:
        counts = ", ".join(f"{n} {kind}" for kind in order if (n := sum(k == kind for k, _ in bad)))
        raise ProxyCLIPError(
            f"{len(bad)} of the {len(images)} {files.noun}s {files.owner} would read from {where(files.folder)} "
            f"({files.option}: {files.layout}) cannot be used ({counts}), checked before any model is built:"
            + listing([line for _, line in bad]) + f"\n{files.remedy(make, bad[0][0] != MISSING)}")
