"""Config files on the command line: the shipped configs' README names resolved from any folder
(`proxyclip.shipped_configs`), and a model config given where a benchmark's belongs refused. The files are read by
`proxyclip.config_files`."""
from __future__ import annotations

from pathlib import Path

from ..config_files import config_section
from ..errors import ProxyCLIPError
from ..shipped_configs import find_config
from .command_line import CONFIG_OPTIONS, CONFIG_SUFFIXES, split_arguments


def _kind(path: Path) -> str | None:
    """"model" for a model config (its top level is the model's: `segmentor:`), "run" for a benchmark or whole config
    (`model:`, `data:`, `trainer:`), None for anything else."""
    data = config_section(path, None)               # {} when unreadable: not ours to judge, the CLI reports it
    if "segmentor" in data and not {"model", "data", "trainer"} & set(data):
        return "model"
    return "run" if {"model", "data"} & set(data) else None


def with_shipped_configs(argv: list[str]) -> list[str]:
    """argv with each config file it names (`--config`, `-c`, `--model`, `--data`) that is not a local file but a
    shipped config's README name (configs/voc21.yaml, configs/model/default.yaml) replaced by the shipped file; a
    ProxyCLIPError for a model config given as the run's config, or a run's config given as the model."""
    argv = list(argv)
    for argument in split_arguments(argv):
        value = argument.value
        if not argument.is_file or value is None or not value.endswith(CONFIG_SUFFIXES):
            continue                                     # inline YAML, or not a config file name
        found = find_config(value)
        if str(found) != value and found.is_file():
            if "=" in argv[argument.start]:              # --option=value
                argv[argument.start] = f"{argument.key}={found}"
            else:
                argv[argument.start + 1] = str(found)
        kind = _kind(found) if found.is_file() else None
        if argument.key in CONFIG_OPTIONS and kind == "model":
            raise ProxyCLIPError(
                f"{value} is a model config (its top level is `segmentor:`), not a benchmark config: give it with --model, "
                f"after the benchmark's config, e.g. `proxyclip test --config configs/voc21.yaml --model {value}` "
                "(the benchmark config sets the data; --model replaces its model).")
        if argument.key == "--model" and kind == "run":
            raise ProxyCLIPError(
                f"{value} is a benchmark config (it has `model:` / `data:` sections), not a model config: give it with "
                f"--config, e.g. `proxyclip test --config {value}`, and a model with --model configs/model/<preset>.yaml.")
    return argv
