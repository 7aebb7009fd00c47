"""PASCAL VOC 2012 val (1449 images): VOC21 (with background) and VOC20 (background ignored)."""
from __future__ import annotations

from .base import SegmentationDataModule


class VOCDataModule(SegmentationDataModule):
    """VOC21: `VOCdevkit/VOC2012` with `JPEGImages/<id>.jpg`, `SegmentationClass/<id>.png` (palette PNG,
    read as indices 0..20; 255 ignore) and the ids of `ImageSets/Segmentation/val.txt`. Class 0 is the
    background, queried by the several names on the vocabulary's first line."""

    dataset_name = "voc21"
    title = "VOC21"
    num_classes = 21
    image_dir = "JPEGImages"
    label_dir = "SegmentationClass"
    image_suffix = ".jpg"
    label_suffix = ".png"
    split_file = "ImageSets/Segmentation/val.txt"
    root_example = "data/VOCdevkit/VOC2012"
    names_example = "voc21"
    background_name = "background"


class VOC20DataModule(VOCDataModule):
    """VOC20: the VOC21 data with the background ignored (mmseg reduce_zero_label: 0 -> 255, k -> k - 1)."""

    dataset_name = "voc20"
    title = "VOC20"
    num_classes = 20
    reduce_zero_label = True
    names_example = "voc20"
