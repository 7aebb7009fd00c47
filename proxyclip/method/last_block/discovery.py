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
_FOLDERS: set[str] = set()          # the modules imported as method folders (shipped subpackages, entry points)


def load_methods() -> None:
    """Import every method folder (which registers its block), then order LAST_BLOCKS by each block's `listed_at`."""
    shipped = importlib.import_module(SHIPPED)
    for info in pkgutil.iter_modules(shipped.__path__):
        if info.ispkg:
            _FOLDERS.add(f"{SHIPPED}.{info.name}")
            importlib.import_module(f"{SHIPPED}.{info.name}")
    for point in sorted(entry_points(group=ENTRY_POINTS), key=lambda p: p.name):
        try:
            _FOLDERS.add(point.module)
            point.load()
        except Exception as exc:   # a broken plugin is named, with its fix; the shipped methods are not hidden by it
            raise ProxyCLIPError(
                f"The method '{point.name}' that the installed distribution "
                f"{getattr(point.dist, 'name', '?')} declares (entry point {point.value} in group {ENTRY_POINTS}) "
                f"cannot be imported: {type(exc).__name__}: {exc}. Fix or uninstall that distribution.") from exc
    LAST_BLOCKS.reorder(lambda name, block: (block.listed_at, name))


def method_folder(method: str) -> Path:
    """The folder of a registered method (where its protocol/, presets/, published.yaml and README.md are): the
    method folder (shipped or an entry point's module) that holds the module defining its block, so that a block
    may live in a subpackage of its folder; a block registered from anywhere else, its own module's folder."""
    module = LAST_BLOCKS.lookup(method).__module__
    owners = [name for name in _FOLDERS if module == name or module.startswith(f"{name}.")]
    folder = sys.modules[max(owners, key=len) if owners else module]
    if folder.__file__ is None:              # a namespace package (a folder without __init__.py)
        return Path(next(iter(folder.__path__)))
    return Path(folder.__file__).parent


def method_presets() -> dict[str, Path]:
    """{preset name: its file} for the presets/*.yaml of every registered method's folder (a distribution's too);
    the shipped ones are also configs/model/<name>.yaml."""
    found: dict[str, Path] = {}
    for method in LAST_BLOCKS:
        for path in sorted((method_folder(method) / "presets").glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found
