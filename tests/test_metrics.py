"""The metric against a plain numpy implementation of docs/method.md §8."""
import numpy as np
import torch

from proxyclip.shell.metric import SegmentationMetric, intersect_and_union


def numpy_reference(preds, labels, num_classes, ignore):
    inter = np.zeros(num_classes, np.int64)
    pred_area = np.zeros(num_classes, np.int64)
    label_area = np.zeros(num_classes, np.int64)
    for pred, label in zip(preds, labels):
        valid = label != ignore
        for c in range(num_classes):
            p, g = (pred == c) & valid, (label == c) & valid
            inter[c] += np.sum(p & g)
            pred_area[c] += np.sum(p)
            label_area[c] += np.sum(g)
    union = pred_area + label_area - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou, acc = inter / union, inter / label_area
    return {"aAcc": inter.sum() / label_area.sum(), "mIoU": np.nanmean(iou), "mAcc": np.nanmean(acc),
            "IoU": iou, "Acc": acc, "counts": np.stack([inter, union, pred_area, label_area])}


def test_metric_matches_numpy_with_ignore_and_absent_classes():
    rng = np.random.default_rng(0)
    num_classes, ignore = 7, 255
    preds, labels = [], []
    for h, w in [(13, 17), (31, 8), (20, 20), (5, 44)]:
        label = rng.integers(0, 5, (h, w))                 # classes 5 and 6 never in the ground truth
        label[rng.random((h, w)) < 0.2] = ignore
        pred = rng.integers(0, 6, (h, w))                  # class 6 never predicted: IoU NaN, skipped
        preds.append(pred)
        labels.append(label)
    metric = SegmentationMetric(num_classes, ignore)
    for pred, label in zip(preds, labels):
        metric.update(torch.from_numpy(pred), torch.from_numpy(label))
    ours = metric.compute()
    ref = numpy_reference(preds, labels, num_classes, ignore)
    assert ours["counts"].dtype == torch.int64
    np.testing.assert_array_equal(ours["counts"].numpy(), ref["counts"])
    for key in ("aAcc", "mIoU", "mAcc"):
        assert abs(float(ours[key]) - ref[key]) < 1e-12
    np.testing.assert_allclose(ours["IoU"].numpy(), ref["IoU"], equal_nan=True)
    np.testing.assert_allclose(ours["Acc"].numpy(), ref["Acc"], equal_nan=True)
    assert np.isnan(ref["IoU"][6]) and ref["IoU"][5] == 0 and int(ours["num_images"]) == 4


def test_out_of_range_labels_follow_histc():
    # legacy .tif protocol: ground truth 65535 is not ignored (ignore=255) and falls out of every bin,
    # but the predictions on those pixels still count in the prediction (and union) areas
    pred = torch.tensor([[0, 1], [1, 1]])
    label = torch.tensor([[0, 65535], [255, 1]])
    inter, union, pred_area, label_area = intersect_and_union(pred, label, 2, ignore_index=255)
    assert inter.tolist() == [1, 1] and pred_area.tolist() == [1, 2] and label_area.tolist() == [1, 1]
    assert union.tolist() == [1, 2]
