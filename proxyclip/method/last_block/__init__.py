"""The method's last CLIP block, one strategy per training-free method: `build_last_block("naclip")`."""
from __future__ import annotations

from typing import Any

from ...errors import ProxyCLIPError, close_matches
from .base import LastBlock
from .clearclip import QueryQueryAttention
from .naclip import NeighbourhoodAttention
from .proxy import ProxyAttention
from .sclip import CorrelativeAttention

#: method name -> its last block
LAST_BLOCKS: dict[str, type[LastBlock]] = {
    "proxyclip": ProxyAttention,
    "sclip": CorrelativeAttention,
    "clearclip": QueryQueryAttention,
    "naclip": NeighbourhoodAttention,
}


def build_last_block(method: str, **kwargs: Any) -> LastBlock:
    if method not in LAST_BLOCKS:
        raise ProxyCLIPError(f"Unknown method '{method}'. {close_matches(method, LAST_BLOCKS)} Set `method:` to one of "
                             f"{', '.join(LAST_BLOCKS)}.")
    try:
        return LAST_BLOCKS[method](**kwargs)
    except TypeError as exc:
        raise ProxyCLIPError(f"method_kwargs {kwargs} do not fit the {method} method ({exc}).") from None


__all__ = ["LAST_BLOCKS", "LastBlock", "build_last_block"]
