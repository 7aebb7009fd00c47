"""The checkpoint Trident loads beyond CLIP's and DINO's (proxyclip/methods/trident/README.md): the whole
segment-anything model of its options `sam` (vit_b, vit_l, vit_h) and `sam_checkpoint`, as `proxyclip-weights`
lists, downloads and records it (`MethodWeights`)."""
from __future__ import annotations

from functools import partial
from typing import Any

from proxyclip.method.last_block.method_weights import MethodWeights
from proxyclip.method.vfm.sam import SAM
from .sam import build_sam

#: where a config chooses SAM's checkpoint (true: Meta's; a path; false: random, the tiny presets')
SAM_KEY = "model.segmentor.method_kwargs.sam_checkpoint"


def sam_weights(options: dict[str, Any]) -> list[MethodWeights]:
    """Trident's options (its defaults filled in) -> its SAM: Meta's checkpoint URL of the variant (torch.hub's cache,
    as `build_sam` loads it), a local file or random; an unknown variant is listed as unknown."""
    variant, checkpoint = str(options["sam"]), options["sam_checkpoint"]
    official = SAM.variants.get(variant)
    return [MethodWeights("SAM", f"SAM {variant} (segment-anything: encoder, prompt encoder, mask decoder)", SAM_KEY,
                          checkpoint, official.url if official else None, partial(build_sam, variant, True))]
