"""PASCAL Context val (5105 images of VOC2010): Context60, Context59 and PASCAL Context 459."""
from __future__ import annotations

from .base import SegmentationDataModule, TifLabelDataModule


class ContextDataModule(SegmentationDataModule):
    """Context60: `VOCdevkit/VOC2010` with `JPEGImages/<id>.jpg`, `SegmentationClassContext/<id>.png`
    (0 background, 1..59) and the ids of `ImageSets/SegmentationContext/val.txt`. Class 0 is queried by
    the single name "background"."""

    dataset_name = "context60"
    title = "Context60"
    num_classes = 60
    image_dir = "JPEGImages"
    label_dir = "SegmentationClassContext"
    image_suffix = ".jpg"
    label_suffix = ".png"
    split_file = "ImageSets/SegmentationContext/val.txt"
    root_example = "data/VOCdevkit/VOC2010"
    names_example = "context60"


class Context59DataModule(ContextDataModule):
    """Context59: the Context60 data with the background ignored (0 -> 255, k -> k - 1)."""

    dataset_name = "context59"
    title = "Context59"
    num_classes = 59
    reduce_zero_label = True
    names_example = "context59"


class Context459DataModule(TifLabelDataModule):
    """PASCAL Context 459 (CAT-Seg preparation): the VOC2010 root, `JPEGImages/<id>.jpg`,
    `annotations_detectron2/pc459_val/<id>.tif` (uint16, 0..458, 65535 ignore; 255 is an ordinary
    class) and the ids of `ImageSets/SegmentationContext/val.txt`. `legacy_ignore_255`: see `TifLabelDataModule`.
    """

    dataset_name = "pc459"
    title = "PC459"
    num_classes = 459
    image_dir = "JPEGImages"
    label_dir = "annotations_detectron2/pc459_val"
    image_suffix = ".jpg"
    split_file = "ImageSets/SegmentationContext/val.txt"
    root_example = "data/VOCdevkit/VOC2010"
    names_example = "context459"
