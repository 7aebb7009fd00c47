"""metrics.json's `protocol`: which protocol ran (original or common, docs/protocols.md) and every value it used.

The values are read from what ran, the built segmentor and the DataModule, not from the config that asked for them:
the vocabulary file and the class names the segmentor encoded, the resize, the window, the thresholds, the
post-processing and the method's own post-processing options as its last block holds them. The protocol's name and
files come from the run's config (the CLI records them as `protocol` and `method_protocol`).
"""
from __future__ import annotations

from typing import Any

from torch import nn


def post_processing(segmentor: nn.Module) -> dict[str, Any]:
    """The method's own post-processing options as they ran (e.g. Trident's sam_refinement), by the names its
    last block switches off under the common protocol."""
    options = segmentor.method_options
    return {name: options[name] for name in type(segmentor.last_block).post_processing_off if name in options}


def protocol_values(segmentor: nn.Module, datamodule: Any) -> dict[str, Any]:
    """Every protocol value the run used, as the segmentor and the DataModule (None outside one) hold them."""
    names_path = getattr(datamodule, "names_path", None)
    scale = getattr(datamodule, "scale", None)
    return {
        "names_file": getattr(datamodule, "names_file", None),
        "vocabulary_file": None if names_path is None else names_path.as_posix(),
        "class_names": list(segmentor.class_names),
        "scale": None if scale is None else list(scale),
        "mode": segmentor.mode,
        "crop_size": segmentor.crop_size,
        "stride": segmentor.stride,
        "prob_thd": segmentor.prob_thd,
        "area_thd": segmentor.area_thd,
        "pamr_steps": segmentor.pamr_steps,
        "logit_scale": segmentor.logit_scale,
        "post_processing": post_processing(segmentor),
    }


def protocol_record(config: dict[str, Any] | None, segmentor: nn.Module, datamodule: Any) -> dict[str, Any]:
    """{"name", "files", "values", "exceptions"}: exceptions are what the method keeps under the common protocol
    (its last block's `common_exceptions`, {step: why}); none under the original, which is the method's own."""
    config = config or {}
    name = config.get("protocol") or "original"
    recorded = config.get("method_protocol")
    files = [recorded] if recorded else []     # none for ProxyCLIP's original: the benchmark config's values are its own
    exceptions = dict(type(segmentor.last_block).common_exceptions) if name == "common" else {}
    return {"name": name, "files": files, "values": protocol_values(segmentor, datamodule), "exceptions": exceptions}
