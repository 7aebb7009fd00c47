"""`build_segmentor`: the segmentor from the same YAML the CLI uses, for library users."""
from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any, Sequence

from ..config_files import model_config
from ..errors import ProxyCLIPError, close_matches
from .loading import WeightsUnavailable
from .method_options import listed, method_option_owners, moved_option_paragraph
from .segmentor import TrainingFreeSegmentor


def segmentor_spec(config: dict[str, Any]) -> dict[str, Any]:
    """The segmentor's init arguments inside a full CLI config, a `model:` section, or the segmentor section itself."""
    for key in ("model", "init_args", "segmentor", "init_args"):
        if isinstance(config, dict) and key in config:
            config = config[key]
    return dict(config or {})


def build_segmentor(config: str | Path | dict[str, Any], class_names: Sequence[str] | None = None, **overrides: Any) -> TrainingFreeSegmentor:
    """Build a `TrainingFreeSegmentor` from a model YAML (e.g. `configs/model/default.yaml`: a shipped config's README
    name works from any folder, a local file of that path wins) or a dict. A benchmark YAML is refused: its data values
    and protocol file are the CLI's to add.

    class_names: the vocabulary (one entry per class, synonyms separated by "; ").
    overrides: init arguments that replace the config's (e.g. prob_thd=0.2, crop_size=224).
    """
    config_path = None
    if isinstance(config, (str, Path)):
        config_path, config = model_config(config, follow=False)
    spec = {k: v for k, v in segmentor_spec(config).items() if k != "class_path"}
    spec.update(overrides)
    if class_names is not None:
        spec["class_names"] = list(class_names)
    known = inspect.signature(TrainingFreeSegmentor.__init__).parameters
    for key in spec:
        if key not in known:
            moved = moved_option_paragraph(key)        # a method's own option, e.g. beta: before method_kwargs
            if moved:
                raise ProxyCLIPError(moved)
            own = difflib.get_close_matches(key, list(method_option_owners()), n=1, cutoff=0.75)
            if own and not difflib.get_close_matches(key, list(known), n=1, cutoff=0.75):
                raise ProxyCLIPError(f"Unknown segmentor option '{key}'. Did you mean {own[0]}, the "
                                     f"{listed(method_option_owners()[own[0]])} method's own option, given in "
                                     f"method_kwargs (method_kwargs={{'{own[0]}': ...}})?")
            raise ProxyCLIPError(f"Unknown segmentor option '{key}'. {close_matches(key, [k for k in known if k != 'self'])}")
    try:
        return TrainingFreeSegmentor(**spec)
    except WeightsUnavailable as exc:     # say how to prepare this very config on a machine with network
        if config_path is None:
            raise
        raise exc.naming(config_path) from exc
