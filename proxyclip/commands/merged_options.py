"""A method's options (`method_kwargs`) merged key by key along the command line, never replaced wholesale.

jsonargparse gives a dict option the value of the last argument that set it: one key on the command line,
`--model.segmentor.method_kwargs '{sam_checkpoint: false}'`, would drop every value of the method's protocol file and
of its preset, and the method's defaults would run instead. The CLI merges instead, as open_clip merges `model_kwargs`
over a model's config. One line of precedence, the later argument winning key by key:

    command line  >  the method's protocol file (configs/<method>/<benchmark>.yaml)  >  the preset  >  the method's defaults

The defaults are filled in when the method is built. A change of method starts again from the new method's defaults
(another method's options never carry over), and so does an explicit `method_kwargs: null`. The merged dict is added
to the command line as one value, so `--print_config`, the saved config.yaml and metrics.json show what runs, and a
saved config, which holds the merged dict, runs again to the same options.
"""
from __future__ import annotations

from typing import Any

from .command_line import CommandLine, get, spellings
from .common_protocol import KWARGS
from .protocols import DEFAULT_METHOD

METHOD = "model.segmentor.init_args.method"
#: the arguments that can change the parsed method or its options; any other leaves both as they were
SETTERS = spellings(METHOD) | spellings(KWARGS)
_MARKER = {"<set before this argument>": 0}   # a dict: the marker must fit the option's type


def merged_method_kwargs(line: CommandLine) -> dict[str, Any] | None:
    """The method's options that every argument of `line` gave, merged in order (None: no argument gave any).

    Each argument's contribution is read from the parses just before and after it, whatever its spelling (a model
    file, a whole config, inline YAML, the option itself)."""
    merged: dict[str, Any] | None = None
    method = DEFAULT_METHOD
    for argument in (a for a in line.arguments if a.key in SETTERS):
        before, after = line.before(argument.start), line.before(argument.end)
        if after is None:                       # a prefix that does not parse: the whole command's parse says why
            continue
        now = str(get(after, METHOD) or DEFAULT_METHOD)
        changed_method = now != method
        if changed_method:                      # another method: its own defaults, not the last one's options
            merged, method = None, now
        given = get(after, KWARGS)
        unchanged = before is not None and given == get(before, KWARGS)
        if unchanged and not (changed_method and line.sets(argument, KWARGS, _MARKER)):
            continue                            # the options as they were (or restated: the same merge)
        if given is None:
            merged = None                       # an explicit null: the method's defaults again
        elif isinstance(given, dict):
            merged = {**(merged or {}), **given}
        else:
            return given                        # not a mapping: check_method_kwargs refuses it in one paragraph
    return merged

