"""mmseg's IoUMetric (METHOD §8): a functional core and a torchmetrics shell that sums counts across processes."""
from __future__ import annotations

import torch
from torchmetrics import Metric


def _histogram(values: torch.Tensor, num_classes: int) -> torch.Tensor:
    # histc over [0, num_classes - 1]: values outside that range fall out of every bin
    values = values[(values >= 0) & (values < num_classes)]
    return torch.bincount(values, minlength=num_classes)


def intersect_and_union(pred: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """Per-class pixel counts of one image, int64 [4, C]: intersection, union, prediction, label.

    pred, label: [H, W] integer class maps of the same size; pixels with label == ignore_index are not counted.
    """
    if pred.shape != label.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(label.shape)} differ in size")
    valid = label != ignore_index
    pred, label = pred[valid].long(), label[valid].long()
    area_intersect = _histogram(pred[pred == label], num_classes)
    area_pred = _histogram(pred, num_classes)
    area_label = _histogram(label, num_classes)
    return torch.stack([area_intersect, area_pred + area_label - area_intersect, area_pred, area_label])


def summarize(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """[4, C] summed counts -> aAcc, mIoU, mAcc (fractions) and per-class IoU, Acc (NaN where undefined)."""
    intersect, union, _, label = counts.double()
    iou = intersect / union                       # 0/0 -> NaN: class absent and never predicted
    acc = intersect / label
    return {
        "aAcc": intersect.sum() / label.sum(),
        "mIoU": torch.nanmean(iou),
        "mAcc": torch.nanmean(acc),
        "IoU": iou,
        "Acc": acc,
    }


class SegmentationMetric(Metric):
    """Per-class intersection / union / prediction / label counts over a test set, summed across processes."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state("counts", torch.zeros(4, num_classes, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("num_images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """pred, label: [H, W] for one image."""
        self.counts += intersect_and_union(pred, label.to(pred.device), self.num_classes, self.ignore_index)
        self.num_images += 1

    def compute(self) -> dict[str, torch.Tensor]:
        return {**summarize(self.counts), "counts": self.counts, "num_images": self.num_images}
