"""The method's last CLIP block, one strategy per training-free method: `build_last_block("naclip")`.

Each strategy's module registers its class in `LAST_BLOCKS` (`@LAST_BLOCKS.register(name)`); importing it here
is all a new method's last block needs. The import order is the order methods are listed in, ProxyCLIP first.
"""
from __future__ import annotations

from typing import Any

from ...errors import ProxyCLIPError
from .base import LAST_BLOCKS, Crops, ImageSource, LastBlock
# Registration at import, in this order (LAST_BLOCKS' order).
from .proxy import ProxyAttention
from .sclip import CorrelativeAttention
from .clearclip import QueryQueryAttention
from .naclip import NeighbourhoodAttention
from .scclip import SelfCalibratedAttention
from .cass import SpectralObjectContext
from .resclip import ResidualFeedbackAttention
from .trident import TridentBlock
from .corrclip import CorrCLIPBlock


def build_last_block(method: str, **kwargs: Any) -> LastBlock:
    block = LAST_BLOCKS.lookup(method)                # an unknown method: the close matches and every known one
    try:
        return block(**kwargs)
    except TypeError as exc:
        raise ProxyCLIPError(f"method_kwargs {kwargs} do not fit the {method} method ({exc}).") from None


__all__ = ["LAST_BLOCKS", "Crops", "ImageSource", "LastBlock", "build_last_block",
           "ProxyAttention", "CorrelativeAttention", "QueryQueryAttention", "NeighbourhoodAttention",
           "SelfCalibratedAttention", "SpectralObjectContext", "ResidualFeedbackAttention", "TridentBlock",
           "CorrCLIPBlock"]
