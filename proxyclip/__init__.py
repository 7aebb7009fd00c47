"""ProxyCLIP: training-free open-vocabulary semantic segmentation (Lan et al., ECCV 2024).

Wings: `proxyclip.method` (plain nn.Modules: encoders, VFM registry, proxy attention, segmentor, builder),
`proxyclip.shell` (LightningModule, metric, result writers), `proxyclip.commands` (CLI, evaluate-all, weights);
`proxyclip.errors`, `proxyclip.vocabulary` and `proxyclip.config_files` (the one reader of config files) are shared
by all. Nothing is imported until used.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "build_segmentor": "method.builder",
    "ProxyCLIPError": "errors",
    "TrainingFreeSegmentor": "method.segmentor",
    "ProxyCLIPSegmentor": "method.segmentor",   # TrainingFreeSegmentor's former name
    "SegmentationMetric": "shell.metric",
    "intersect_and_union": "shell.metric",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'proxyclip' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
