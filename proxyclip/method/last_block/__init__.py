"""The method's last CLIP block, one strategy per training-free method: `build_last_block("naclip")`.

Each method is a folder (proxyclip/methods/<name>/, or another distribution's under the `proxyclip.methods` entry
points) whose block registers itself in `LAST_BLOCKS` (`@LAST_BLOCKS.register(name)`); `discovery.load_methods`
imports them all, by name, and orders them by `listed_at` (ProxyCLIP first).
"""
from __future__ import annotations

from typing import Any

from ...errors import ProxyCLIPError
from .base import LAST_BLOCKS, Crops, ImageSource, ImageState, LastBlock, WholeImageLogits
from .discovery import load_methods, method_folder

load_methods()


def build_last_block(method: str, **kwargs: Any) -> LastBlock:
    block = LAST_BLOCKS.lookup(method)                # an unknown method: the close matches and every known one
    try:
        return block(**kwargs)
    except TypeError as exc:
        raise ProxyCLIPError(f"method_kwargs {kwargs} do not fit the {method} method ({exc}).") from None


__all__ = ["LAST_BLOCKS", "Crops", "ImageSource", "ImageState", "LastBlock", "WholeImageLogits", "build_last_block", "load_methods", "method_folder"]
