"""The pixel statistics each encoder's weights were trained with, and the two ways of normalising with them
(docs/method.md §1).

Statistics are RGB (mean, std) in [0, 1] units. CLIP's come from open_clip's pretrained configuration of the tag,
a VFM's from its registry entry (timm's pretrained configuration, SAM's own pixel_mean / pixel_std). A value the
user states must agree with the weights' (in float32, the precision it runs in); weights that do not say (a local
CLIP checkpoint) need it stated.

numerics "original" computes the CLIP input as mmseg's SegDataPreProcessor does in every original harness: the
0-255 values cast to float32, then (x - mean) / std with the statistics x 255 rounded to 3 decimals (for OpenAI's:
mmseg's [122.771, 116.746, 104.094] / [68.501, 66.632, 70.323]). numerics "defined" normalises x / 255 with the
statistics themselves. In both, the VFM input is derived from the CLIP input as ProxyCLIP's original derives it.
"""
from __future__ import annotations

from typing import Literal, Sequence

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from ..errors import ProxyCLIPError
from .loading import is_local_path
from .vfm.registry import get_vfm_entry

Numerics = Literal["original", "defined"]
NUMERICS = ("original", "defined")
Triple = tuple[float, float, float]


def _triple(value: Sequence[float] | None, option: str) -> Triple | None:
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3:
        raise ProxyCLIPError(f"{option} must be three numbers (R, G, B, in [0, 1] units), got {value!r}.")
    if option.endswith("std") and min(values) <= 0:
        raise ProxyCLIPError(f"{option} must be positive (a standard deviation per channel), got {list(value)}.")
    return values


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    """Equal in float32, the precision the normalisation runs in."""
    return torch.equal(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))


def _show(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.10g}" for v in values) + "]"


def _agree(option: str, given: Triple | None, trained: Triple, weights: str, key: str) -> Triple:
    if given is not None and not _same(given, trained):
        raise ProxyCLIPError(
            f"{option}={_show(given)} contradicts the weights of {weights}, which were trained with {key} {_show(trained)}. "
            f"Set {option} to {_show(trained)} or null (from the weights)."
        )
    return trained


def clip_statistics(model: str | dict, pretrained: str | None, mean: Sequence[float] | None,
                    std: Sequence[float] | None) -> tuple[Triple, Triple]:
    """(mean, std) CLIP's input is normalised with.

    A pretrained tag: open_clip's pretrained configuration of the tag (OpenAI's when it names none); a stated value
    must agree. Random weights (pretrained None): the stated values, else OpenAI's (open_clip's default). A local
    checkpoint file does not say what its weights were trained with: both must be stated.
    """
    mean, std = _triple(mean, "clip_mean"), _triple(std, "clip_std")
    if pretrained is not None and not is_local_path(pretrained):
        name = model if isinstance(model, str) else ""
        cfg = open_clip.get_pretrained_cfg(name, pretrained) if name else {}
        weights = f"CLIP {name} ({pretrained})"
        return (_agree("clip_mean", mean, tuple(cfg.get("mean", OPENAI_DATASET_MEAN)), weights, "mean"),
                _agree("clip_std", std, tuple(cfg.get("std", OPENAI_DATASET_STD)), weights, "std"))
    if pretrained is not None and (mean is None or std is None):
        raise ProxyCLIPError(
            f"The checkpoint '{pretrained}' does not say which pixel statistics CLIP was trained with, and wrong ones "
            f"shift every input. State both clip_mean and clip_std (RGB, [0, 1] units; e.g. --model.segmentor.clip_mean "
            f"'{_show(OPENAI_DATASET_MEAN)}' --model.segmentor.clip_std '{_show(OPENAI_DATASET_STD)}', OpenAI's, for "
            "OpenAI's weights and most LAION ones): open_clip's pretrained config of the tag the checkpoint came from "
            "says (`open_clip.get_pretrained_cfg(model, tag)`; ViT-L-14 laion2b_s32b_b82k: 0.5 and 0.5)."
        )
    return mean or tuple(OPENAI_DATASET_MEAN), std or tuple(OPENAI_DATASET_STD)


def vfm_statistics(name: str, pretrained: bool | str, mean: Sequence[float] | None,
                   std: Sequence[float] | None) -> tuple[Triple, Triple]:
    """(mean, std) the registered VFM `name` is normalised with: its registry entry's (the family's own), which a
    stated value must agree with for the library's weights; for random weights or a local checkpoint of the
    family a stated value is applied."""
    mean, std = _triple(mean, "vfm_mean"), _triple(std, "vfm_std")
    trained_mean, trained_std = get_vfm_entry(name).pixel_statistics()
    if pretrained is True:
        weights = f"the VFM {name}"
        return _agree("vfm_mean", mean, trained_mean, weights, "mean"), _agree("vfm_std", std, trained_std, weights, "std")
    return mean or trained_mean, std or trained_std


def resolve_statistics(clip_model: str | dict, clip_pretrained: str | None, clip_mean: Sequence[float] | None,
                       clip_std: Sequence[float] | None, vfm: str | None, vfm_pretrained: bool | str | None,
                       vfm_mean: Sequence[float] | None, vfm_std: Sequence[float] | None) -> dict[str, Triple]:
    """The statistics a segmentor normalises with, by buffer name (clip_mean, clip_std and, when a VFM is built
    (`vfm` not None: method_options has settled it), vfm_mean, vfm_std), resolved before any model is built."""
    found = dict(zip(("clip_mean", "clip_std"), clip_statistics(clip_model, clip_pretrained, clip_mean, clip_std)))
    if vfm is not None:
        found.update(zip(("vfm_mean", "vfm_std"), vfm_statistics(vfm, vfm_pretrained, vfm_mean, vfm_std)))
    return found


def mmseg_constants(values: Sequence[float]) -> Triple:
    """Statistics in [0, 1] units as the originals' SegDataPreProcessor states them: x 255, rounded to 3 decimals."""
    return tuple(round(float(v) * 255, 3) for v in values)


#: the buffers `statistics_buffers` makes; a segmentor keeps them float32 whatever its encoders' dtype, as the originals'
#: fp16 runs normalise in float32 and cast the result (ProxyCLIP proxyclip_segmentor.py:116, :177)
STATISTICS_BUFFERS = ("clip_mean", "clip_std", "clip_mean_255", "clip_std_255", "vfm_mean", "vfm_std")


def statistics_buffers(statistics: dict[str, Triple]) -> dict[str, torch.Tensor]:
    """`resolve_statistics`'s values as [3, 1, 1] float32 tensors ([0, 1] units), and CLIP's as the originals'
    SegDataPreProcessor states them (clip_mean_255, clip_std_255: 0-255 units, rounded to 3 decimals)."""
    buffers = {name: torch.tensor(value, dtype=torch.float32).view(3, 1, 1) for name, value in statistics.items()}
    for name in ("clip_mean", "clip_std"):
        buffers[f"{name}_255"] = torch.tensor(mmseg_constants(statistics[name]), dtype=torch.float32).view(3, 1, 1)
    return buffers


def clip_input(image: torch.Tensor, numerics: Numerics, mean: torch.Tensor, std: torch.Tensor,
               mean_255: torch.Tensor, std_255: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] RGB, uint8 (0-255) or float in [0, 1] -> CLIP's float32 input.

    original: mmseg's SegDataPreProcessor.forward (mmseg 1.1.1, mmseg/models/data_preprocessor.py:116-118): the
        0-255 values cast to float32, then (x - mean_255) / std_255 (a float image is scaled by 255 first).
    defined: (x / 255 - mean) / std.
    mean, std: [3, 1, 1] float32 in [0, 1] units; mean_255, std_255: the same x 255 rounded to 3 decimals.
    """
    if numerics == "original":
        x = image.float() if image.dtype == torch.uint8 else image.float() * 255.0
        return (x - mean_255) / std_255
    x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    return (x - mean) / std


def vfm_input(x: torch.Tensor, clip_mean: torch.Tensor, clip_std: torch.Tensor, vfm_mean: torch.Tensor,
              vfm_std: torch.Tensor) -> torch.Tensor:
    """CLIP's input [B, 3, H, W] (padding included) -> the VFM's, as ProxyCLIP's original derives it
    (proxyclip_segmentor.py:79-80, 113): un-normalised with CLIP's statistics (myutils.py:13-14: per channel
    x * std, then + mean, two float32 roundings), then normalised with the VFM's (torchvision 0.14.1
    functional_tensor.py:940: - mean, then / std). Padding reaches the VFM as CLIP's mean colour."""
    pixels = x * clip_std + clip_mean          # two kernels, two roundings: never fused into one
    return (pixels - vfm_mean) / vfm_std
