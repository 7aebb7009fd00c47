"""CorrCLIP's region masks as files read one per image (`LastBlock.image_files`): the CLI checks the folder before
any model is built (proxyclip/commands/image_files_check.py). The masks are read when the run reaches each image
(block.py `region_mask`); without the check a folder that lacks one mask, or holds a damaged one or one of another
size, stopped `test` there (exit 2, no results kept) and named only that one."""
from __future__ import annotations

import os
from typing import Any

from proxyclip.method.last_block.image_files import ImageFiles

from .sam2_masks import INSTALL, UnusableMask, load_instance_mask, mask_path


def region_mask_files(options: dict[str, Any]) -> ImageFiles | None:
    """The mask folder the run reads (method_kwargs.instance_mask_path); None when SAM 2 makes the masks per image
    (mask_generator set) or no folder is given."""
    folder = options.get("instance_mask_path")
    if options.get("mask_generator") is not None or folder is None:
        return None
    return ImageFiles(noun="region mask", owner="CorrCLIP", option="method_kwargs.instance_mask_path",
                      folder=os.fspath(folder), per_image="<image stem>.npz",
                      layout="<image stem>.npz with the key instance_mask, the image's size",
                      path_of=mask_path, read=load_instance_mask, unusable=UnusableMask, maker="proxyclip-masks",
                      remedy=remedy)


def remedy(make: str, delete: bool) -> str:
    """The ways to a folder that holds this data's masks (proxyclip-masks skips the masks already there)."""
    first = "; it makes only those not there yet, so delete the unreadable and wrong-size files first" if delete else ""
    return (f"Make the masks with `{make}` ({INSTALL} first{first}), or extract the original's published "
            "region_masks.zip there (docs/region_masks.md); or set method_kwargs.instance_mask_path to the folder "
            "that holds this data's masks.")
