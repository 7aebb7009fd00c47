"""A method's options (`method_kwargs`) merged key by key along the command line, never replaced wholesale.

jsonargparse gives a dict option the value of the last argument that set it: one key on the command line,
`--model.segmentor.method_kwargs '{sam_checkpoint: false}'`, would drop every value of the method's protocol file and
of its preset, and the method's defaults would run instead. The CLI merges instead, as open_clip merges `model_kwargs`
over a model's config. One line of precedence, the later argument winning key by key:

    command line  >  the method's protocol file (configs/<method>/<benchmark>.yaml)  >  the benchmark config  >  the
    preset  >  the method's defaults            (layers.py: the order the parser reads the arguments in)

The defaults are filled in when the method is built. A change of method starts again from the new method's defaults
(another method's options never carry over), and so does an explicit `method_kwargs: null`. The merged dict is added
to the command line as one value, after every layer, so `--print_config`, the saved config.yaml and metrics.json show
what runs, and a saved config, which holds the merged dict, runs again to the same options.
"""
from __future__ import annotations

from typing import Any

from .common_protocol import KWARGS
from .layers import LayeredLine
from .protocols import DEFAULT_METHOD, METHOD


def merged_method_kwargs(line: LayeredLine) -> dict[str, Any] | None:
    """The method's options that the layers of `line` gave, merged in their order of precedence (None: no layer
    gave any). What a layer gives is read from the layer (a model file, a whole config, inline YAML, the option)."""
    merged: dict[str, Any] | None = None
    method = DEFAULT_METHOD
    for layer in line.layers:
        if layer.sets(METHOD) and str(layer.get(METHOD) or DEFAULT_METHOD) != method:
            merged, method = None, str(layer.get(METHOD) or DEFAULT_METHOD)   # another method: its own defaults
        if not layer.sets(KWARGS):
            continue
        given = layer.get(KWARGS)
        if given is None:
            merged = None                       # an explicit null: the method's defaults again
        elif isinstance(given, dict):
            merged = {**(merged or {}), **given}
        else:
            return given                        # not a mapping: check_method_kwargs refuses it in one paragraph
    return merged
