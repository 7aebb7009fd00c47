"""The configs the package ships (`proxyclip/configs/`, the repository's `configs/`), found from any folder."""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import yaml


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


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}                                        # not ours to judge: the CLI reports an unreadable config
    return data if isinstance(data, dict) else {}


def config_section(config: str | os.PathLike, key: str | None) -> dict:
    """A config file's `key` section (the whole file for None), following a `key: other.yaml` reference (relative
    to the file); {} where the file or the section is missing or unreadable."""
    path = Path(config)
    data = _read_yaml(path)
    section = data if key is None else data.get(key)
    if isinstance(section, str):
        return _read_yaml(path.parent / section)
    return section if isinstance(section, dict) else {}
