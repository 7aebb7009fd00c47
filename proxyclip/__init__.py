"""ProxyCLIP: training-free open-vocabulary semantic segmentation (Lan et al., ECCV 2024)."""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Imported on first use, so that `python -m proxyclip.<module>` does not import its own module twice.
_EXPORTS = {
    "build_segmentor": "builder",
    "ProxyCLIPError": "errors",
    "ProxyCLIPSegmentor": "segmentor",
    "SegmentationMetric": "metrics",
    "intersect_and_union": "metrics",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'proxyclip' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
