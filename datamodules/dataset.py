"""(image, label) pairs read from disk, and their collation into per-image lists (sizes differ)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DataError
from .io import read_image, read_label
from .labels import LabelMap, label_problem


class SegmentationDataset(Dataset):
    """(image, label) pairs read from disk.

    Item `i` is `{"image": uint8 [3, h, w] RGB after `transform`, "label": int64 [H, W] at the
    original size after `label_map`, "ori_size": (H, W), "path": image path, "index": i}`. A label whose size
    differs from its image, or (when `check_range`) with values outside `[0, num_classes - 1]` other
    than `ignore_index`, raises `DataError` naming the file.
    """

    def __init__(self, samples: Sequence[tuple[str, str]], num_classes: int, ignore_index: int = 255,
                 transform: Callable[..., dict] | None = None, label_map: LabelMap | None = None,
                 check_range: bool = True):
        self.samples = [(str(img), str(lbl)) for img, lbl in samples]
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.transform = transform
        self.label_map = label_map
        self.check_range = check_range

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path, label_path = self.samples[index]
        image = read_image(image_path)
        stored = read_label(label_path)
        label = stored if self.label_map is None else self.label_map(stored)
        problem = label_problem(label, image.shape[:2], image_path, label_path, self.num_classes,
                                self.ignore_index, self.check_range, stored)
        if problem:
            raise DataError(problem)
        if self.transform is not None:
            image = self.transform(image=image)["image"]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "label": torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64)),
            "ori_size": (int(label.shape[0]), int(label.shape[1])),
            "path": image_path,
            "index": index,
        }


def collate(items: Sequence[dict[str, Any]]) -> dict[str, list]:
    """Keep per-image tensors (sizes differ): `{"images": [...], "labels": [...], "ori_sizes": [(H, W)...],
    "paths": [...], "indices": [...]}` (`ori_sizes`, the original image sizes, as the image-folder DataModule gives
    them; `indices`, the positions in the dataset, whichever process holds the image)."""
    return {
        "images": [item["image"] for item in items],
        "labels": [item["label"] for item in items],
        "ori_sizes": [item["ori_size"] for item in items],
        "paths": [item["path"] for item in items],
        "indices": [item["index"] for item in items],
    }
