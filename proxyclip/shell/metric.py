"""mmseg's IoUMetric (docs/method.md §8): a functional core and a torchmetrics shell that sums counts across processes."""
from __future__ import annotations

import torch
from torchmetrics import Metric


def intersect_and_union(pred: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """Per-class pixel counts of one image, int64 [4, C]: intersection, union, prediction, label.

    pred, label: [H, W] integer class maps of the same size; pixels with label == ignore_index are not counted.
    As mmseg's `histc` over [0, C - 1], values outside that range fall out of every bin (a legacy-ignore
    label 65535 leaves G_c alone while its pixel's prediction still counts in P_c). One scatter into fixed-size
    bins, so nothing waits for the GPU (boolean indexing and `bincount` would synchronise).
    """
    if pred.shape != label.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(label.shape)} differ in size")
    pred, label = pred.reshape(-1).long(), label.reshape(-1).long()
    valid = label != ignore_index
    outside = num_classes                                       # one extra bin per row collects what is not counted
    in_range = lambda v: (v >= 0) & (v < num_classes)           # noqa: E731
    rows = torch.stack([
        torch.where(valid & (pred == label) & in_range(pred), pred, outside),   # intersection
        torch.where(valid & in_range(pred), pred, outside),                     # prediction
        torch.where(valid & in_range(label), label, outside),                   # label
    ])                                                          # [3, N]
    offsets = torch.arange(3, device=pred.device).view(3, 1) * (num_classes + 1)
    bins = torch.zeros(3 * (num_classes + 1), dtype=torch.int64, device=pred.device)
    bins.scatter_add_(0, (rows + offsets).reshape(-1), torch.ones_like(rows).reshape(-1))
    area_intersect, area_pred, area_label = bins.view(3, num_classes + 1)[:, :num_classes]
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
    """Per-class intersection / union / prediction / label counts over a test set, summed across processes, and
    the pixels decided on NaN logits (docs/method.md §3.4: an emptied proxy-attention row under numerics original)."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state("counts", torch.zeros(4, num_classes, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("num_images", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("nan_pixels", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, label: torch.Tensor, nan: torch.Tensor | None = None) -> None:
        """pred, label: [H, W] for one image; nan: [H, W] bool, its pixels whose logits are NaN (every one counted,
        whatever its label; a sum on the device, so nothing waits for the GPU)."""
        self.counts += intersect_and_union(pred, label.to(pred.device), self.num_classes, self.ignore_index)
        self.num_images += 1
        if nan is not None:
            self.nan_pixels += nan.sum()

    def compute(self) -> dict[str, torch.Tensor]:
        return {**summarize(self.counts), "counts": self.counts, "num_images": self.num_images, "nan_pixels": self.nan_pixels}
