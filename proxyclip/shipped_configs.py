"""The configs the package ships (`proxyclip/configs/`, the repository's `configs/`), found by their README names
from any folder: shared by the library (`build_segmentor`) and the commands."""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def packaged_configs() -> Path:
    """The folder of the shipped configs (inside the installed package, or the checkout's)."""
    return Path(str(resources.files("proxyclip") / "configs"))


def find_config(path: str | os.PathLike) -> Path:
    """`path` as given when it exists; else, for `configs/...` or a bare `model/...`-style path, the shipped config
    of that name, so that `configs/model/default.yaml` works from any folder once the package is installed."""
    given = Path(path).expanduser()
    if given.exists() or given.is_absolute():
        return given
    parts = given.parts[1:] if given.parts[:1] == ("configs",) else given.parts
    shipped = packaged_configs().joinpath(*parts) if parts else given
    return shipped if shipped.exists() else given


def shown_name(path: Path, name: str) -> str:
    """`name`, the package-relative name users read (configs/sclip/voc21.yaml, proxyclip/methods/x/published.yaml),
    when it is `path` in this package (a link into a method's folder counts); else `path` itself (a distribution's
    method keeps the path of its own file)."""
    parts = Path(name).parts
    here = packaged_configs().joinpath(*parts[1:]) if parts[:1] == ("configs",) else \
        Path(str(resources.files("proxyclip"))).joinpath(*parts[1:])
    return name if here.is_file() and here.resolve() == Path(path).resolve() else str(path)
