"""The method: ProxyCLIP as plain `nn.Module`s (encoders, VFM registry, proxy attention, segmentor, builder).

Nothing here imports Lightning, the CLI or the data: the wings above (`proxyclip.shell`, `proxyclip.commands`)
and `datamodules` build on it. docs/method.md is the specification its `§` references point to.
"""
from .builder import build_segmentor
from .segmentor import ProxyCLIPSegmentor, TrainingFreeSegmentor

__all__ = ["TrainingFreeSegmentor", "ProxyCLIPSegmentor", "build_segmentor"]
