"""Config files (YAML) are read here and nowhere else: the library's `build_segmentor`, the commands' config checks,
`proxyclip-weights`, `eval_all` (the CLI's printed config) and the result writer (the run's dumped config) all read
through this module, so a missing or broken file is reported one way. Shared by the method, the shell and the
commands, so it imports none of them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .errors import ProxyCLIPError
from .shipped_configs import find_config


def config_from_text(text: str, source: str) -> dict[str, Any]:
    """The options in YAML `text` ({} for an empty text); a ProxyCLIPError naming `source` where the text is not
    YAML or holds no mapping of options."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise ProxyCLIPError(f"The config {source} is not valid YAML{line}: {getattr(exc, 'problem', None) or exc}. "
                             "Fix the file; configs/model/default.yaml shows the format.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProxyCLIPError(f"The config {source} holds a {type(data).__name__}, not a mapping of options. A model "
                             "config starts with `segmentor:`, a benchmark config with `model:` and `data:` "
                             "(see configs/model/default.yaml and configs/voc21.yaml).")
    return data


def option_value(text: str) -> Any:
    """A command-line value as jsonargparse reads it (YAML: `0.3`, `[1, 2]`, `{a: 1}`), the text itself where it is
    not YAML (the parser then says what is wrong with it)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The options in the YAML file `path`; a ProxyCLIPError naming the file where it cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProxyCLIPError(f"The config {path} cannot be read ({exc.strerror or exc}). Check the path and that "
                             "the file is readable.") from exc
    return config_from_text(text, str(path))


def config_section(config: str | os.PathLike, key: str | None) -> dict[str, Any]:
    """A config file's `key` section (the whole file for None), following a `key: other.yaml` reference (relative
    to the file); {} where the file or the section is missing or unreadable: for the commands' checks before the
    CLI parses, which reports an unreadable config itself."""
    path = Path(config)
    try:
        data = read_config(path)
        section = data if key is None else data.get(key)
        if isinstance(section, str):
            return read_config(path.parent / section)
    except ProxyCLIPError:
        return {}
    return section if isinstance(section, dict) else {}


def model_config(config: str | os.PathLike, follow: bool = True) -> tuple[Path, dict[str, Any]]:
    """(the file, its options) of a model config, or of the model a benchmark config names (`model: model/x.yaml`,
    relative to that file, as jsonargparse resolves it); a shipped config's README name works from any folder.
    follow=False refuses a benchmark config (its data values would be left out)."""
    path = find_config(config)
    if not path.is_file():
        raise ProxyCLIPError(f"Config '{config}' does not exist (looked for {path}). Give a model config "
                             "(configs/model/*.yaml), a benchmark config (configs/*.yaml) or your own YAML file.")
    data = read_config(path)
    if isinstance(data.get("model"), str):
        if not follow:
            raise ProxyCLIPError(
                f"{path} is a benchmark config: the CLI adds its data values (vocabulary, crop_size, stride, prob_thd, "
                f"numerics) and its method's protocol file to the model config it names, {data['model']}, which "
                "build_segmentor would not do. Give the model config and the values you want as keywords (e.g. "
                "build_segmentor('configs/model/default.yaml', class_names, crop_size=224)), or run the benchmark "
                f"with `python main.py test --config {path}`.")
        return model_config(path.parent / data["model"])
    return path, data
