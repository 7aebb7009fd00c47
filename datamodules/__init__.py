"""Data for the ProxyCLIP evaluation: one LightningDataModule per benchmark (docs/method.md §7).

Nothing here imports the method: the model reads what it needs (`class_names`, `num_classes`,
`prob_thd`, `crop_size`, `stride`, `ignore_index`, `dataset_name`) from the DataModule's attributes.
"""
from .ade import ADE20KDataModule, ADE847DataModule
from .base import SegmentationDataModule, TifLabelDataModule
from .dataset import SegmentationDataset, collate
from .cityscapes import CityscapesDataModule
from .coco import COCOObjectDataModule, COCOStuffDataModule
from .context import Context59DataModule, Context459DataModule, ContextDataModule
from .errors import DataError
from .voc import VOC20DataModule, VOCDataModule

#: The ten benchmarks by config name (`configs/data/<name>.yaml`), in the papers' table order.
DATAMODULES: dict[str, type[SegmentationDataModule]] = {
    cls.dataset_name: cls
    for cls in (VOCDataModule, ContextDataModule, COCOObjectDataModule, VOC20DataModule, Context59DataModule,
                COCOStuffDataModule, CityscapesDataModule, ADE20KDataModule, Context459DataModule, ADE847DataModule)
}

__all__ = [
    "ADE20KDataModule",
    "ADE847DataModule",
    "COCOObjectDataModule",
    "COCOStuffDataModule",
    "CityscapesDataModule",
    "Context459DataModule",
    "Context59DataModule",
    "ContextDataModule",
    "DATAMODULES",
    "DataError",
    "SegmentationDataModule",
    "SegmentationDataset",
    "TifLabelDataModule",
    "VOC20DataModule",
    "VOCDataModule",
    "collate",
]
