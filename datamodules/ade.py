"""ADE20K val (2000 images): ADE20K 150 and ADE20K-847."""
from __future__ import annotations

from .base import SegmentationDataModule, TifLabelDataModule


class ADE20KDataModule(SegmentationDataModule):
    """ADE20K 150: `ADEChallengeData2016` with `images/validation/<id>.jpg` and
    `annotations/validation/<id>.png` (0 ignored: reduce_zero_label, k -> k - 1); images sorted by name."""

    dataset_name = "ade20k"
    title = "ADE20K"
    num_classes = 150
    reduce_zero_label = True
    image_dir = "images/validation"
    label_dir = "annotations/validation"
    image_suffix = ".jpg"
    label_suffix = ".png"
    split_file = None
    root_example = "data/ADEChallengeData2016"
    names_example = "ade20k"


class ADE847DataModule(TifLabelDataModule):
    """ADE20K-847 (CAT-Seg preparation): `ADE20K_2021_17_01` with `images_detectron2/validation/<id>.jpg`
    and `annotations_detectron2/validation/<id>.tif` (uint16, 0..846, 65535 ignore; 255 is an ordinary
    class). The ids are those of `<root>/validation.txt` when it exists (the original reads that file:
    `cfg_ade847.py`, `ann_file`), else every image, sorted by name. `legacy_ignore_255`: see `TifLabelDataModule`.
    """

    dataset_name = "ade847"
    title = "ADE847"
    num_classes = 847
    image_dir = "images_detectron2/validation"
    label_dir = "annotations_detectron2/validation"
    image_suffix = ".jpg"
    split_file = "validation.txt"
    split_file_optional = True
    root_example = "data/ADE20K_2021_17_01"
    names_example = "ade20k847"
