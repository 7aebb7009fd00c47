"""Trident's SAM refinement of the labels (seg_utils/utils.py:27-196; proxyclip/methods/trident/README.md): each class's
connected regions (on the labels at half size) prompt SAM's mask decoder with their box, their most probable point
and the class's probabilities as a mask; confident masks relabel the pixels they cover."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def connected_regions(mask: torch.Tensor) -> list[torch.Tensor]:
    """The 8-connected regions of a bool mask [H, W] (skimage.measure.label(connectivity=2)), each a bool [H, W],
    in skimage's order (raster order of each region's first pixel).

    Every pixel starts labelled with its own flat index; each round takes the largest label among its 3 x 3
    foreground neighbours, then follows labels as pointers (a label is a pixel of the same region whose label is
    no smaller) until they stop changing. The fixed point labels each region with its largest index."""
    h, w = mask.shape
    index = torch.arange(h * w, device=mask.device).view(h, w)
    fg = mask.bool()
    labels = torch.where(fg, index, -1)
    while True:
        grown = F.max_pool2d(labels[None, None].float(), 3, stride=1, padding=1)[0, 0].long()   # exact below 2^24
        grown = torch.where(fg, torch.maximum(grown, labels), -1)
        flat = grown.flatten()
        while True:                                                     # pointer jumping
            jumped = torch.where(flat >= 0, flat[flat.clamp(min=0)], -1)
            if torch.equal(jumped, flat):
                break
            flat = jumped
        grown = flat.view(h, w)
        if torch.equal(grown, labels):
            break
        labels = grown
    ids = labels[fg]
    firsts = torch.full((h * w,), h * w, device=mask.device).scatter_reduce(0, ids, index[fg], "amin")
    order = torch.unique(ids)
    order = order[torch.argsort(firsts[order])]
    return [labels == i for i in order.tolist()]


def region_prompts(region: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(box [x1, y1, x2, y2] (torchvision masks_to_boxes: inclusive), point [x, y] of the class's largest
    probability in the region, first in raster order) of a bool region [h, w] (seg_utils/utils.py:52-68)."""
    ys, xs = torch.nonzero(region, as_tuple=True)
    box = torch.stack([xs.min(), ys.min(), xs.max(), ys.max()]).float()
    best = torch.argmax(probs * region).item()
    return box, torch.tensor([best % probs.shape[1], best // probs.shape[1]], dtype=torch.float32, device=probs.device)


@torch.no_grad()
def sam_refinement(labels: torch.Tensor, probs: torch.Tensor, predictor, image_size: tuple[int, int],
                   coarse_thresh: float, minimal_area: int, sam_mask_coff: float, sam_iou_thresh: float) -> torch.Tensor:
    """labels [H, W] int64 and class probabilities [C, H, W] -> refined labels [H, W] (sam_refinement,
    seg_utils/utils.py:92-196). `predictor`: a SamPredictor with the image set; image_size: the file's (h, w)."""
    num_classes, (h, w) = probs.shape[0], labels.shape
    dh, dw = h // 2, w // 2                                              # down_ratio 2 (:107-111)
    coarse = F.interpolate(labels[None, None].float(), [dh, dw], mode="nearest")[0, 0].long()
    probs_down = F.interpolate(probs[None], [dh, dw], mode="bilinear", align_corners=False)[0]
    if coarse_thresh > 0:      # uncertain pixels become an extra class that is never split (:120-126)
        coarse[probs_down.max(0)[0] < coarse_thresh] = num_classes
    side = predictor.model.prompt_encoder.mask_input_size[0]            # the original's literal 256
    new_h, new_w = predictor.transform.get_preprocess_shape(image_size[0], image_size[1], side)
    kept_logits, kept_classes = [], []
    for c in range(num_classes):
        class_probs = probs_down[c]
        if class_probs.max() < coarse_thresh:
            continue
        regions = [r for r in connected_regions(coarse == c) if r.sum() >= minimal_area]
        if not regions:
            continue
        boxes, points = zip(*(region_prompts(r, class_probs) for r in regions))
        prior = F.interpolate(class_probs[None, None], [new_h, new_w], mode="bilinear", align_corners=False)[0]
        prior = F.pad(prior, (0, side - new_w, 0, side - new_h))
        prior = torch.where(prior > coarse_thresh, sam_mask_coff * prior, 0.0)     # [1, side, side]
        # Unbatched as in the original: SAM's LayerNorm2d then normalises this mask over rows, not channels; the one
        # mask embedding is broadcast to every prompt.
        _, scores, low_res = predictor.predict_torch(
            point_coords=predictor.transform.apply_coords_torch(torch.stack(points), [dh, dw]).unsqueeze(1),
            point_labels=torch.ones(len(points), 1, device=probs.device), boxes=predictor.transform.apply_boxes_torch(torch.stack(boxes), [dh, dw]),
            mask_input=prior, multimask_output=False)
        valid = scores[:, 0] > sam_iou_thresh
        if valid.any():
            kept_logits.append(low_res[valid])
            kept_classes += [c] * int(valid.sum())
    if not kept_logits:
        return labels
    logits = predictor.model.postprocess_masks(torch.cat(kept_logits), predictor.input_size, predictor.original_size)
    if tuple(logits.shape[-2:]) != (h, w):
        logits = F.interpolate(logits, (h, w), mode="bilinear", align_corners=False)
    masks, scores = logits[:, 0] > predictor.model.mask_threshold, logits[:, 0].sigmoid()
    refined = probs.new_zeros(num_classes, h, w)                        # map_refinement_coarse (:71-83)
    classes = torch.tensor(kept_classes, device=probs.device)
    for c in classes.unique().tolist():
        mine = classes == c
        refined[c] = (scores[mine] * probs[c]).max(dim=0)[0] * masks[mine].any(dim=0)
    # Pixels no kept mask covers keep their label (:190). The regions SAM was not confident about (map_failed_regions,
    # :85-90, :191-195) only raise the probabilities there: a label changes where failed > refined after refined = max(refined,
    # failed), which never holds, so the labels are final here.
    return torch.where(refined.sum(dim=0) == 0, labels, refined.argmax(dim=0))
