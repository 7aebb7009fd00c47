"""Relative paths in a data config resolve against that config's folder, as jsonargparse resolves its own path types.

`names_file: my_names.txt` and `root: images` in `/data/mine/my_dataset.yaml` are `/data/mine/my_names.txt` and
`/data/mine/images` from any working folder; a value given on the command line is relative to the working folder.
The last layer that set an option decides (layers.py: the file that gave the value, also the one a benchmark
config's `data:` names), also where a flag repeats the text of a config file's value.
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

from .command_line import option
from .layers import LayeredLine
from ..shipped_configs import packaged_configs

PATH_OPTIONS = ("root", "names_file", "inputs", "vocabulary")
INSTALLED = Path(datamodules.__file__).resolve().parent.parent    # the folder holding `datamodules` and `proxyclip`


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


def _folder(line: LayeredLine, name: str) -> Path:
    """The folder the value of `name` is relative to: that of the config file that set it last, else (a flag, inline
    YAML, a default) the working folder; for the shipped configs, see the module's docstring."""
    layer = line.last(f"data.init_args.{name}")
    given_in = layer.file_of(f"data.init_args.{name}") if layer is not None and layer.is_file else None
    if given_in is None:
        return Path.cwd()
    if not given_in.resolve().is_relative_to(packaged_configs().resolve()):
        return given_in.parent
    return Path.cwd() if name == "root" else INSTALLED                # the shipped configs' placeholder, their assets


def resolve_data_paths(line: LayeredLine, config: Any) -> list[str]:
    """The data options (`--data.init_args.names_file=/abs/...`) that make the data's relative paths absolute, for
    `line` and `config`, its parsed subcommand configuration without the protocol layers; [] when there are none."""
    added = []
    for name in PATH_OPTIONS:
        value = line.final(f"data.init_args.{name}", config)
        if value is not None:
            resolved = _resolve(name, value, _folder(line, name))
            if resolved != value:
                added.append(option(f"data.init_args.{name}", resolved))
    return added
