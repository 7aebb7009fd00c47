"""What a run prints: the configuration mistakes as one paragraph, and no third-party notices unless asked for."""
from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import logging
import os
import re
import warnings
from pathlib import Path

from .links import link_target_paragraph

ALL_MESSAGES_FLAG = "--all_messages"
_ENV = "PROXYCLIP_ALL_MESSAGES"


def show_all_messages() -> None:
    os.environ[_ENV] = "1"


def quiet_third_party() -> None:
    """Unless `--all_messages`: no seed messages, Lightning tips and hardware banners, no deprecation notices of the
    libraries we call. Progress bars, results, warnings about the run itself and errors stay."""
    if os.environ.get(_ENV):
        return
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.fabric.utilities.seed", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    for message in ("No seed found", r".*isinstance\(treespec, LeafSpec\)", "LightningCLI's args parameter",
                    r".*does not have many workers", r".*The '.*_dataloader' does not have"):
        warnings.filterwarnings("ignore", message=message)


def _close(name: str, choices: list[str]) -> str:
    matches = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f" Did you mean {', '.join(f'`{m}`' for m in matches)}?" if matches else ""


def _parameters(class_path: str) -> list[str]:
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except Exception:  # noqa: BLE001 - only for suggestions
        return []
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]


def _known_options() -> list[str]:
    from lightning.pytorch import Trainer

    from ..method.segmentor import TrainingFreeSegmentor
    from ..shell.module import ProxyCLIPModule

    names = [f"--trainer.{p}" for p in inspect.signature(Trainer.__init__).parameters if p != "self"]
    names += [f"--model.{p}" for p in inspect.signature(ProxyCLIPModule.__init__).parameters if p != "self"]
    names += [f"--model.segmentor.{p}" for p in inspect.signature(TrainingFreeSegmentor.__init__).parameters if p != "self"]
    return names + ["--config", "--model", "--data", "--print_config", "--ckpt_path", "--seed_everything"]


def _option_path(key: str, option: str, subclass: bool) -> str:
    """The command-line spelling of `option` below `key` (a DataModule's options are under `init_args`)."""
    if not key:
        return option
    return f"{key}.init_args.{option}" if subclass and key == "data" else f"{key}.{option}"


def _missing_file_paragraph(flat: str, key: str, hint: str) -> str | None:
    missing = re.search(r"File does not exist: '([^']+)'", flat)
    if not missing:
        return None
    path = missing.group(1)
    return (f"The config file {path} does not exist (relative paths start at {Path.cwd()}). Give the path of a "
            f"YAML file, e.g. configs/voc21.yaml for a benchmark or configs/model/default.yaml for --model.{hint}")


def _unloadable_paragraph(flat: str, key: str, hint: str) -> str | None:
    unloadable = re.search(r"Unable to load config '([^']+)'", flat)
    if not unloadable:
        return None
    path = unloadable.group(1)
    why = "does not exist" if not Path(path).expanduser().exists() else "is not a YAML config"
    where = {"model": "configs/model/ (default.yaml, vitb16_dino_vitb8.yaml, ...)",
             "data": "configs/data/ (voc21.yaml, ...)"}.get(key, "configs/")
    return f"--{key or 'config'} {path} {why}. The shipped ones are in {where}.{hint}"


def _rejected_option_paragraph(flat: str, key: str, hint: str) -> str | None:
    rejected = re.search(r"(?:Option|Key) ['\"]([^'\"]+)['\"] is not (?:accepted|expected)", flat)
    if not rejected:
        return None
    from ..method.method_options import method_option_owners

    option = rejected.group(1).split(".")[-1]
    class_path = re.search(r"class_path '([^']+)'", flat)
    choices = _parameters(class_path.group(1)) if class_path else []
    where = f"--{_option_path(key, option, class_path is not None)}"
    owner = class_path.group(1).rsplit(".", 1)[-1] if class_path else (key or "the config")
    close = _close(option, choices)
    if not close and key.endswith("segmentor"):             # a method's own option, e.g. bata: beta
        close = _close(option, list(method_option_owners()))
        close = close and (f"{close[:-1]} (a method's own option, given as --model.segmentor.method_kwargs "
                           f"'{{NAME: VALUE}}')?")
    return f"{where} is not an option of {owner}.{close}{hint}"


def _wrong_type_paragraph(flat: str, key: str, hint: str) -> str | None:
    expected = sorted(set(re.findall(r"Expected a <class '(\w+)'>", flat)) - {"NoneType"})
    given = re.search(r"(?:Given|Got) value: (\S+)", flat)
    if not (expected and given):
        return None
    inner = re.findall(r'Parser key "([^"]+)"', flat)[-1]
    where = _option_path(key, inner, "class_path" in flat) if inner != key else key
    nullable = " (or null)" if "NoneType" in flat else ""
    yaml_hint = (" Write it as quoted YAML with a space after each colon, e.g. --model.segmentor.method_kwargs "
                 "'{beta: 1.0, gamma: 3.0}'." if where.endswith("method_kwargs") else "")
    return f"--{where} {given.group(1)}: expected {' or '.join(expected)}{nullable}.{yaml_hint}{hint}"


def _unknown_argument_paragraph(flat: str, key: str, hint: str) -> str | None:
    unknown = re.search(r"unrecognized arguments: (\S+)", flat)
    if not unknown:
        return None
    option = unknown.group(1)
    return f"{option} is not an option.{_close(option, _known_options())}{hint}"


# What argument_error_paragraph tries after the linked and moved options, in this order: the first that recognises
# the message explains it.
_EXPLAINERS = (_missing_file_paragraph, _unloadable_paragraph, _rejected_option_paragraph, _wrong_type_paragraph,
               _unknown_argument_paragraph)


def argument_error_paragraph(exc: BaseException) -> str | None:
    """One paragraph for a command-line or config mistake that jsonargparse reported, or None for anything else."""
    if not isinstance(exc, argparse.ArgumentError) and type(exc).__name__ != "ArgumentError":
        return None
    text = str(exc)
    flat = " ".join(text.split())
    hint = " `--help` lists every option."
    key = re.match(r'Parser key "([^"]+)"', flat)
    key = key.group(1) if key else ""
    linked = re.search(r'Linked "([\w.]+)" must be given via "data\.([\w.]+)"|argument data\.([\w.]+) --> ([\w.]+):', flat)
    if linked:                                           # a value for an option the CLI sets from the data
        source, target = linked.group(2) or linked.group(3), linked.group(1) or linked.group(4)
        return link_target_paragraph(target, source)
    from ..method.method_options import moved_option_paragraph

    moved = re.search(r"Option '(\w+)' is not accepted", flat)
    paragraph = moved_option_paragraph(moved.group(1)) if moved and "model.segmentor" in flat else None
    if paragraph:                                        # a method's own option, e.g. beta: before method_kwargs
        return paragraph
    for explain in _EXPLAINERS:
        paragraph = explain(flat, key, hint)
        if paragraph is not None:
            return paragraph
    return flat + hint
