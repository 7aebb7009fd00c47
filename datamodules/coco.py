"""COCO-Stuff-164k val2017 (5000 images): COCO-Stuff 171 and COCO-Object 81."""
from __future__ import annotations

from .base import SegmentationDataModule


class COCOStuffDataModule(SegmentationDataModule):
    """COCO-Stuff 171: `coco_stuff164k` with `images/val2017/<id>.jpg` and
    `annotations/val2017/<id>_labelTrainIds.png` (0..170, 255 ignore); images sorted by name."""

    dataset_name = "coco_stuff"
    title = "COCO-Stuff"
    num_classes = 171
    image_dir = "images/val2017"
    label_dir = "annotations/val2017"
    image_suffix = ".jpg"
    label_suffix = "_labelTrainIds.png"
    split_file = None
    root_example = "data/coco_stuff164k"
    names_example = "coco_stuff"
    prepare_hint = ("The *_labelTrainIds.png files come from mmseg's COCO-Stuff-164k conversion "
                    "(tools/dataset_converters/coco_stuff164k.py).")


class COCOObjectDataModule(COCOStuffDataModule):
    """COCO-Object 81: the COCO-Stuff root with `annotations/val2017/<id>_instanceTrainIds.png`
    (0 background, 1..80 the things in COCO order), made once by
    `python -m datamodules.prepare coco-object <root>`."""

    dataset_name = "coco_object"
    title = "COCO-Object"
    num_classes = 81
    label_suffix = "_instanceTrainIds.png"
    names_example = "coco_object"
    background_name = "background"
    prepare_hint = ("Make the *_instanceTrainIds.png labels once with "
                    "`python -m datamodules.prepare coco-object <root>`.")
