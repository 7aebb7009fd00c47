"""The checkpoint CorrCLIP loads beyond CLIP's and DINO's (proxyclip/methods/corrclip/README.md): SAM 2's, when its
region masks are made during the run (`mask_generator: sam2`, `sam2_model`, `sam2_checkpoint`), and each official SAM 2
by its name alone (`proxyclip-weights download sam2_hiera_l`, for `proxyclip-masks`), as `MethodWeights`."""
from __future__ import annotations

from functools import partial
from typing import Any

from proxyclip.method.last_block.method_weights import MethodWeights
from .sam2_masks import DEFAULT_SAM2, SAM2_MODELS

#: where a config chooses SAM 2's checkpoint, and where `proxyclip-masks` does
IN_A_RUN_KEY = "model.segmentor.method_kwargs.sam2_checkpoint"
IN_THE_COMMAND_KEY = "proxyclip-masks --checkpoint"


def sam2_weights(name: str, checkpoint: Any = True, key: str = IN_THE_COMMAND_KEY) -> MethodWeights:
    """The checkpoint of the SAM 2 model `name` (sam2_hiera_l, ...): Meta's URL, into torch.hub's cache as
    `SAM2MaskGenerator` loads it; a local file; or random. An unknown name is listed as unknown."""
    official = SAM2_MODELS.get(name)
    if official is None:
        return MethodWeights("SAM2", name, key, checkpoint, None, partial(_generator, name))
    return MethodWeights("SAM2", f"{name} ({official.size})", key, checkpoint, official.url, partial(_generator, name),
                         name=name)


def run_sam2_weights(options: dict[str, Any]) -> list[MethodWeights]:
    """CorrCLIP's options (its defaults filled in) -> SAM 2's checkpoint where it runs SAM 2 on each image itself
    (`mask_generator: sam2`; null `sam2_model`: the original's sam2_hiera_l); none where it reads a mask folder."""
    if options.get("mask_generator") != "sam2":
        return []
    return [sam2_weights(str(options.get("sam2_model") or DEFAULT_SAM2), options.get("sam2_checkpoint", True),
                         IN_A_RUN_KEY)]


def named_sam2_weights() -> list[MethodWeights]:
    """Every official SAM 2 by its name, as `proxyclip-masks` chooses them (its `--checkpoint` the local file)."""
    return [sam2_weights(name) for name in SAM2_MODELS]


def _generator(name: str) -> object:
    """SAM 2's automatic mask generator with Meta's checkpoint of `name` (downloaded and checked as in a run)."""
    from .sam2_masks import SAM2MaskGenerator

    return SAM2MaskGenerator(name, True)
