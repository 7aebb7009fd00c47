"""`build_segmentor`: the segmentor from the same YAML the CLI uses, for library users."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Sequence

from ..config_files import model_config
from ..errors import ProxyCLIPError, close_matches
from .loading import WeightsUnavailable
from .segmentor import ProxyCLIPSegmentor


def segmentor_spec(config: dict[str, Any]) -> dict[str, Any]:
    """The segmentor's init arguments inside a full CLI config, a `model:` section, or the segmentor section itself."""
    for key in ("model", "init_args", "segmentor", "init_args"):
        if isinstance(config, dict) and key in config:
            config = config[key]
    return dict(config or {})


def build_segmentor(config: str | Path | dict[str, Any], class_names: Sequence[str] | None = None, **overrides: Any) -> ProxyCLIPSegmentor:
    """Build a `ProxyCLIPSegmentor` from a model YAML (e.g. `configs/model/default.yaml`: a shipped config's README name
    works from any folder, a local file of that path wins) or a dict. A benchmark YAML is refused: its data values
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
    known = inspect.signature(ProxyCLIPSegmentor.__init__).parameters
    for key in spec:
        if key not in known:
            raise ProxyCLIPError(f"Unknown segmentor option '{key}'. {close_matches(key, [k for k in known if k != 'self'])}")
    try:
        return ProxyCLIPSegmentor(**spec)
    except WeightsUnavailable as exc:     # say how to prepare this very config on a machine with network
        if config_path is None:
            raise
        raise exc.naming(config_path) from exc
