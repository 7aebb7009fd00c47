"""Which segmentor options belong to which method, and what an option left unset (None) means.

ProxyCLIP's adaptive normalisation (`beta`, `gamma`) and the VFM (`vfm`, `vfm_pretrained`, `vfm_kwargs`, `vfm_mean`,
`vfm_std`) are read only by the methods that have them. Given to another method they would be accepted and never
read, so they are refused, naming the method that owns them. Left unset, they take the method's own defaults.
"""
from __future__ import annotations

import inspect
from typing import Any

from ..errors import ProxyCLIPError
from .last_block import LAST_BLOCKS, build_last_block

#: method -> the VFM it builds when `vfm` is not given; a method absent here builds none (needs_vfm is False)
DEFAULT_VFM = {"proxyclip": "dino_vitb8"}
#: the values used outside a benchmark protocol (the CLI sets them from the data config): the paper's crop and
#: stride, and every pixel decided by its best class
PROTOCOL_DEFAULTS = {"prob_thd": 0.0, "crop_size": 336, "stride": 112}
VFM_OPTIONS = ("vfm", "vfm_pretrained", "vfm_kwargs", "vfm_mean", "vfm_std")
#: the segmentor options only some methods read (check_method_options refuses them for the others)
METHOD_OPTIONS = ("beta", "gamma", *VFM_OPTIONS)


def _block_options(method: str) -> set[str]:
    """The options of the method's last block (its `__init__` parameters), e.g. proxyclip: beta, gamma."""
    return set(inspect.signature(LAST_BLOCKS[method].__init__).parameters) - {"self", "args", "kwargs"}


def _owners(option: str) -> list[str]:
    if option in VFM_OPTIONS:
        return [m for m, block in LAST_BLOCKS.items() if block.needs_vfm]
    return [m for m in LAST_BLOCKS if option in _block_options(m)]


def check_method_options(method: str, **options: Any) -> None:
    """Refuse, in one paragraph, the options given (not None) that `method` does not read.

    options: segmentor options owned by some methods only: beta, gamma (ProxyCLIP's proxy attention) and vfm,
    vfm_pretrained, vfm_kwargs, vfm_mean, vfm_std (the methods with a VFM).
    """
    if method not in LAST_BLOCKS:
        build_last_block(method)                      # raises the unknown-method paragraph
    foreign = {name: value for name, value in options.items() if value is not None and (
        (name in VFM_OPTIONS and not LAST_BLOCKS[method].needs_vfm)
        or (name not in VFM_OPTIONS and name not in _block_options(method)))}
    if not foreign:
        return
    owners = sorted({owner for name in foreign for owner in _owners(name)})
    given = ", ".join(f"{name}={value!r}" for name, value in foreign.items())
    raise ProxyCLIPError(
        f"{given}: {'these are options' if len(foreign) > 1 else 'an option'} of {' and '.join(owners)} only; the "
        f"{method} method does not read {'them' if len(foreign) > 1 else 'it'}. Leave {', '.join(foreign)} out (or "
        f"null, e.g. --model.segmentor.{next(iter(foreign))} null), or start from a {method} model config "
        f"(configs/model/{method}_*.yaml), which sets none of them.")


def method_settings(method: str, method_kwargs: dict[str, Any] | None, *, beta: float | None, gamma: float | None,
                    vfm: str | None, vfm_pretrained: bool | str | None,
                    vfm_kwargs: dict[str, Any] | None, vfm_mean: Any = None,
                    vfm_std: Any = None) -> tuple[dict[str, Any], str | None, bool | str | None]:
    """(the last block's options, the VFM to build, its weights) once another method's options are refused: beta
    and gamma go to ProxyCLIP's block (its own defaults where unset), an unset VFM is the method's default one with
    the library's pretrained weights; a method without a VFM gets (None, None)."""
    check_method_options(method, beta=beta, gamma=gamma, vfm=vfm, vfm_pretrained=vfm_pretrained, vfm_kwargs=vfm_kwargs,
                         vfm_mean=vfm_mean, vfm_std=vfm_std)
    block_kwargs = {**{k: v for k, v in (("beta", beta), ("gamma", gamma)) if v is not None}, **(method_kwargs or {})}
    return (block_kwargs, *method_vfm(method, vfm, vfm_pretrained))


def method_vfm(method: str, vfm: str | None, vfm_pretrained: bool | str | None) -> tuple[str | None, bool | str | None]:
    """(VFM name, pretrained setting) that `method` builds: unset ones are its default VFM with the library's
    pretrained weights (True); (None, None) for a method without a VFM."""
    if method not in DEFAULT_VFM:
        return None, None
    return vfm or DEFAULT_VFM[method], True if vfm_pretrained is None else vfm_pretrained


def protocol_values(prob_thd: float | None, crop_size: int | None, stride: int | None) -> tuple[float, int, int]:
    """The benchmark-protocol values as given, PROTOCOL_DEFAULTS where unset."""
    given = {"prob_thd": prob_thd, "crop_size": crop_size, "stride": stride}
    return tuple(PROTOCOL_DEFAULTS[k] if v is None else v for k, v in given.items())  # type: ignore[return-value]
