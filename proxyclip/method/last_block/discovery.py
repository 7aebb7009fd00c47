"""Finding the methods: each is a folder that registers its last block when imported (docs/adding_a_method.md).

The package's own are the subfolders of `proxyclip/methods/`; another distribution adds one by declaring its folder
under the `proxyclip.methods` entry-point group:

    [project.entry-points."proxyclip.methods"]
    mymethod = "my_package.mymethod"

Both are imported here, once, by name: the engine names no method. A folder holds, beside its maths, `protocol/`
(<benchmark>.yaml, the method's own values), `presets/` (<preset>.yaml), `published.yaml` and `README.md`.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path

from ...errors import ProxyCLIPError
from .base import LAST_BLOCKS

SHIPPED = "proxyclip.methods"     # the package whose subfolders are the shipped methods
ENTRY_POINTS = "proxyclip.methods"  # the entry-point group of methods other distributions add


def load_methods() -> None:
    """Import every method folder (which registers its block), then order LAST_BLOCKS by each block's `listed_at`."""
    shipped = importlib.import_module(SHIPPED)
    for info in pkgutil.iter_modules(shipped.__path__):
        if info.ispkg:
            importlib.import_module(f"{SHIPPED}.{info.name}")
    for point in sorted(entry_points(group=ENTRY_POINTS), key=lambda p: p.name):
        try:
            point.load()
        except Exception as exc:   # a broken plugin is named, with its fix; the shipped methods are not hidden by it
            raise ProxyCLIPError(
                f"The method '{point.name}' that the installed distribution "
                f"{getattr(point.dist, 'name', '?')} declares (entry point {point.value} in group {ENTRY_POINTS}) "
                f"cannot be imported: {type(exc).__name__}: {exc}. Fix or uninstall that distribution.") from exc
    LAST_BLOCKS.reorder(lambda name, block: (block.listed_at, name))


def method_folder(method: str) -> Path:
    """The folder of a registered method (where its protocol/, presets/, published.yaml and README.md are)."""
    block = LAST_BLOCKS.lookup(method)
    return Path(sys.modules[block.__module__].__file__).parent
