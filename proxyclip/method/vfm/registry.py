"""A registry of named VFMs (timm style): `build_vfm("dino_vitb8")` -> a `VFMAdapter`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import timm

from ..registry import Registry
from .base import VFMAdapter


@dataclass(frozen=True)
class VFMEntry:
    """A registered VFM: the adapter's builder, the arguments that pick the model, and where its weights come from.

    weights_url: the pretrained checkpoint's URL (fetched into torch.hub's cache), for families outside timm (SAM);
        otherwise the weights are timm's pretrained ones of `timm_name` (the builder's `model_name`).
    statistics: (mean, std), RGB in [0, 1] units, that the weights were trained with, for families outside timm
        (SAM's own pixel_mean / pixel_std); otherwise timm's pretrained configuration of `timm_name` says.
    """

    name: str
    builder: Callable[..., VFMAdapter]
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    weights_url: str | None = None
    statistics: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @property
    def timm_name(self) -> str | None:
        return self.kwargs.get("model_name")

    def pixel_statistics(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """(mean, std) of the pixels the weights were trained on (docs/method.md §1)."""
        if self.statistics is not None:
            mean, std = self.statistics
        else:
            cfg = timm.models.get_pretrained_cfg(self.timm_name)
            mean, std = cfg.mean, cfg.std
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)


#: name -> entry; each family's module joins it with one `register_family` call when `proxyclip.method.vfm` is imported.
VFMS: Registry[VFMEntry] = Registry("VFM", "vfm")


def register_vfm(name: str, builder: Callable[..., VFMAdapter], description: str = "", weights_url: str | None = None,
                 statistics: tuple[tuple[float, ...], tuple[float, ...]] | None = None, **kwargs: Any) -> VFMEntry:
    """Register `name`: `builder(pretrained=, model_kwargs=, **kwargs)` builds it (see `VFMEntry` for the rest)."""
    return VFMS.register(name, VFMEntry(name, builder, dict(kwargs), description, weights_url, statistics))


def register_family(family: Any) -> None:
    """Register every variant of a family: `family.entries()` maps each name to its `register_vfm` fields (description,
    weights_url, statistics, and the builder's own arguments), and `family.build` builds them all."""
    for name, fields in family.entries().items():
        register_vfm(name, family.build, **fields)


def list_vfms() -> list[str]:
    return sorted(VFMS)


def get_vfm_entry(name: str) -> VFMEntry:
    return VFMS.lookup(name)


def build_vfm(name: str, pretrained: bool | str = True, model_kwargs: dict[str, Any] | None = None) -> VFMAdapter:
    """Build the registered VFM `name`.

    pretrained: True loads the library's pretrained weights (download or local cache), False keeps the
        random initialisation, a string is a local checkpoint file.
    model_kwargs: passed to the model factory (e.g. depth, embed_dim for tiny test models).
    """
    entry = get_vfm_entry(name)
    return entry.builder(pretrained=pretrained, model_kwargs=dict(model_kwargs or {}), **entry.kwargs)
