"""Files a method reads one per image (CorrCLIP's region masks), declared by the method (`LastBlock.image_files`) so
that the CLI checks every image's file before any model is built and names every bad one at once
(proxyclip/commands/image_files_check.py), naming no method itself."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class ImageFiles:
    """One file per image in `folder`, as the method will read it when the run reaches that image."""
    noun: str                                   # what one file is, e.g. "region mask"
    owner: str                                  # the method's display name, e.g. "CorrCLIP"
    option: str                                 # the option that names the folder, e.g. "method_kwargs.instance_mask_path"
    folder: str                                 # the folder that option names
    per_image: str                              # one file's name, e.g. "<image stem>.npz"
    layout: str                                 # what one file holds, for the refusal
    path_of: Callable[[str, str], Path]         # (folder, image path) -> that image's file
    read: Callable[[Path], Any]                 # file -> [H, W] array; raises `unusable` (why, after the file's name)
    unusable: type[Exception]
    maker: str                                  # the command that makes them (--images/--config, --root, --output)
    remedy: Callable[[str, bool], str]          # (the maker's command for this data, whether to delete some first)
