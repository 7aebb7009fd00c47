"""What a method declares of the checkpoints it loads beyond CLIP's and the VFM's (Trident's whole SAM, CorrCLIP's
SAM 2), so that `proxyclip-weights` can list, download and record them without naming any method.

A method answers `LastBlock.weights(options)` with one `MethodWeights` per checkpoint its options make it load, and
`LastBlock.named_weights()` with those a user may ask for by name alone (`proxyclip-weights list sam2_hiera_l`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class MethodWeights:
    """One checkpoint of a method, as `proxyclip-weights` shows it and run.json records it.

    component: its name in the listing ("SAM", "SAM2"); lower-cased, its key in run.json's weights provenance.
    model: what is built, e.g. "SAM vit_b (segment-anything: encoder, prompt encoder, mask decoder)".
    key: where the checkpoint is chosen, e.g. "model.segmentor.method_kwargs.sam_checkpoint" (what `list` tells the
        user to set to a local file).
    checkpoint: that setting's value: true the official checkpoint at `url`; a path a local file (listed with its
        sha256); false or null random weights (the method's tiny presets: provenance "random").
    url: the official checkpoint, which the method loads through torch.hub (so it lies in torch.hub's cache once
        downloaded); None: the method knows no such model (listed as unknown, its provenance `model`).
    download: builds the model with the official checkpoint exactly as a run loads it (the download, then the key
        check); called by `proxyclip-weights download` only when `checkpoint` is true and `url` is known.
    name: the name a user may ask for it by alone (`proxyclip-weights list sam2_hiera_l`); "" for none.
    """

    component: str
    model: str
    key: str
    checkpoint: Any
    url: str | None
    download: Callable[[], object]
    name: str = ""
