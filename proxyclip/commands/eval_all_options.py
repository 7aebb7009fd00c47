"""proxyclip-eval-all's command line (eval_all.py): its options, and the checks of the datasets, roots and model
configs it names, made before any benchmark runs so that a typo costs no run."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..shipped_configs import find_config
from .common_protocol import no_common_protocol
from .earlier_outputs import OVERWRITE_FLAG
from .eval_protocols import CHOICES, HELP as PROTOCOL_HELP, refuse_common_setting
from .summary_table import BENCHMARKS


def build_parser(description: str) -> argparse.ArgumentParser:
    """The command's options; other arguments are passed to `main.py test`."""
    parser = argparse.ArgumentParser(prog="proxyclip-eval-all", allow_abbrev=False, description=description,
                                     epilog="Other arguments (e.g. --trainer.devices 8) are passed to `main.py test`.")
    parser.add_argument("--model", nargs="+", default=["configs/model/default.yaml"],
                        help="model configs, one setting (a row of the table) each, named by the file's stem; another "
                             "method's (e.g. configs/model/sclip_vitb16.yaml) runs each benchmark with that method's own "
                             "values (configs/<method>/<benchmark>.yaml)")
    parser.add_argument("--datasets", nargs="+", default=["all"],
                        help=f"benchmarks, or all: {' '.join(BENCHMARKS)}; or dataset configs (path/to/my_dataset.yaml, "
                             "README 'Add a dataset'), named by the file's stem, their root from the config or --root")
    parser.add_argument("--data-root", default="data", help="folder holding the datasets' layout folders (e.g. VOCdevkit/VOC2012)")
    parser.add_argument("--root", action="append", nargs="+", default=[], metavar="NAME=PATH",
                        help="benchmarks' roots instead of the defaults: one or more NAME=PATH (the option may be repeated)")
    parser.add_argument("--output", default="outputs/eval_all", help="results folder: <output>/<setting>/<benchmark>/")
    parser.add_argument("--allow-missing", action="store_true",
                        help="exit 0 although some requested benchmarks have no dataset folder (they show as missing)")
    parser.add_argument(OVERWRITE_FLAG, action="store_true",
                        help="run a benchmark whose folder holds the finished results of another config (another model "
                             "file or other options), replacing them; without it such a benchmark is not run and shows "
                             "as kept (results of this same config are skipped either way, and an earlier failed run is "
                             "always run again)")
    parser.add_argument("--protocol", choices=CHOICES, default="original", help=PROTOCOL_HELP)
    return parser


def named_datasets(datasets: list[str]) -> tuple[list[str], dict[str, Path]]:
    """(the column names: benchmarks, and dataset configs by their stem, {stem: dataset config} of the latter)."""
    names = list(BENCHMARKS) if datasets == ["all"] else datasets
    custom = {Path(n).stem: Path(n).expanduser().resolve() for n in names if n.endswith((".yaml", ".yml"))}
    return [Path(n).stem if n.endswith((".yaml", ".yml")) else n for n in names], custom


def dataset_clashes(names: list[str], custom: dict[str, Path]) -> list[str]:
    """What makes the datasets' columns ambiguous: a dataset config that is not there or is named like a benchmark."""
    clashes = [f"{path} does not exist" for path in custom.values() if not path.is_file()]
    return clashes + [f"{path} would share the column {name} with the benchmark"
                      for name, path in custom.items() if name in BENCHMARKS]


def checked_datasets(parser: argparse.ArgumentParser, args: argparse.Namespace
                     ) -> tuple[list[str], dict[str, Path], dict[str, str]]:
    """(dataset names, {name: dataset config} of the custom ones, {name: --root path}); a bad name, root or
    dataset config ends the command with the parser's error."""
    args.root = [pair for pairs in args.root for pair in pairs]   # --root a=X b=Y, --root a=X --root b=Y: the same
    names, custom = named_datasets(args.datasets)
    overrides = dict(item.split("=", 1) for item in args.root if "=" in item)
    unknown = [n for n in [*names, *overrides] if n not in BENCHMARKS and n not in custom] + [i for i in args.root if "=" not in i]
    if unknown:
        parser.error(f"unknown benchmark or bad --root: {', '.join(unknown)}; benchmarks are {', '.join(BENCHMARKS)}, "
                     "or give a dataset config (path/to/my_dataset.yaml)")
    clashes = dataset_clashes(names, custom)
    if clashes or len(set(names)) < len(names):
        parser.error("; ".join(clashes) or f"a dataset is named twice in --datasets: {' '.join(names)}")
    return names, custom, overrides


def checked_models(parser: argparse.ArgumentParser, args: argparse.Namespace, custom: dict[str, Path]) -> list[Path]:
    """The model configs, absolute (a link kept as the user named it: configs/model/<preset>.yaml, not the method
    folder's file it points to); a missing one, or a setting the protocol refuses, ends the command with the parser's
    error."""
    models = [Path(os.path.abspath(find_config(m))) for m in args.model]
    for given, model in zip(args.model, models):
        if not model.is_file():
            parser.error(f"model config '{given}' does not exist")
    if refuse_common_setting(models):
        parser.error(refuse_common_setting(models))
    if args.protocol != "original" and custom:       # as `proxyclip test --protocol common` refuses it, before any run
        parser.error(no_common_protocol(", ".join(f"{name} ({path})" for name, path in custom.items()), args.protocol))
    return models
