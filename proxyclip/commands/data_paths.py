"""Relative paths in a data config resolve against that config's folder, as jsonargparse resolves its own path types.

`names_file: my_names.txt` and `root: images` in `/data/mine/my_dataset.yaml` are `/data/mine/my_names.txt` and
`/data/mine/images` from any working folder; a value given on the command line is relative to the working folder.
The CLI writes the absolute paths into the run's config, so that a saved config (print_config, config.yaml,
metrics.json) runs the same from anywhere.

The shipped configs (proxyclip/configs) are the exception: their `root: data/...` is a placeholder for
`--data.init_args.root`, relative to the working folder, and their bundled files (`datamodules/assets/...`) are
relative to the installed packages, wherever those are. Inline class names (`vocabulary: "sky, horse"`) and packaged
vocabulary names (`names_file: voc21`) are not paths.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import datamodules
from datamodules.vocabulary_files import packaged_names

from .command_line import absolute, get, option
from ..shipped_configs import packaged_configs
from .configs import config_section

PATH_OPTIONS = ("root", "names_file", "inputs", "vocabulary")
INSTALLED = Path(datamodules.__file__).resolve().parent.parent    # the folder holding `datamodules` and `proxyclip`


def _holders(config: Any) -> list[tuple[Path, dict]]:
    """(file, its data section) for each config file that may have given the data options, the latest first: the
    file of the data section itself, then each whole config (following a `data: other.yaml` reference)."""
    found = []
    own = get(config, "data.__path__")
    if own is not None:
        path = absolute(own)
        found.append((path, config_section(path, None)))
    for given in reversed(get(config, "config") or []):
        path = absolute(given)
        reference = config_section(path, None).get("data")
        holder = path.parent / reference if isinstance(reference, str) else path
        found.append((holder, config_section(path, "data")))
    return found


def _resolve(name: str, value: Any, folder: Path) -> Any:
    """`value` of the data option `name`, relative paths resolved against `folder`."""
    if isinstance(value, list):
        return [_resolve(name, item, folder) for item in value]
    if not isinstance(value, str) or value.startswith("~") or Path(value).is_absolute():
        return value
    candidate = folder / value
    if name == "vocabulary" and not candidate.is_file():
        return value                                                 # inline class names, not a file
    if name == "names_file" and not candidate.is_file() and (value[:-4] if value.endswith(".txt") else value) in packaged_names():
        return value                                                 # a packaged vocabulary (voc21, sclip/voc21)
    return str(candidate)


def _folder(name: str, value: Any, holders: list[tuple[Path, dict]]) -> Path:
    """The folder `value` is relative to: that of the config file that gave it, else the working folder."""
    for holder, section in holders:
        given = section.get("init_args") if isinstance(section.get("init_args"), dict) else section
        if given.get(name) == value:
            if not holder.resolve().is_relative_to(packaged_configs().resolve()):
                return holder.parent
            return Path.cwd() if name == "root" else INSTALLED      # the shipped configs' placeholder, their assets
    return Path.cwd()


def resolve_data_paths(config: Any) -> list[str]:
    """The data options (`--data.init_args.names_file=/abs/...`) that make the data's relative paths absolute, for a
    subcommand's parsed `config`; [] when there are none."""
    init_args, holders = get(config, "data.init_args"), _holders(config)
    added = []
    for name in PATH_OPTIONS:
        value = get(init_args, name)
        if value is not None:
            resolved = _resolve(name, value, _folder(name, value, holders))
            if resolved != value:
                added.append(option(f"data.init_args.{name}", resolved))
    return added
