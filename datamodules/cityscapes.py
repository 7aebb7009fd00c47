"""Cityscapes val (500 images, 19 classes)."""
from __future__ import annotations

from .base import SegmentationDataModule


class CityscapesDataModule(SegmentationDataModule):
    """Cityscapes: `cityscapes` with `leftImg8bit/val/<city>/<stem>_leftImg8bit.png` and
    `gtFine/val/<city>/<stem>_gtFine_labelTrainIds.png` (19 classes, 255 ignore); images sorted by
    path. Make the train-id labels once with `python -m datamodules.prepare cityscapes <root>`."""

    dataset_name = "cityscapes"
    title = "Cityscapes"
    num_classes = 19
    image_dir = "leftImg8bit/val"
    label_dir = "gtFine/val"
    image_suffix = "_leftImg8bit.png"
    label_suffix = "_gtFine_labelTrainIds.png"
    split_file = None
    root_example = "data/cityscapes"
    names_example = "city_scapes"
    prepare_hint = ("Make the *_gtFine_labelTrainIds.png labels once from the *_gtFine_labelIds.png with "
                    "`python -m datamodules.prepare cityscapes <root>`.")
