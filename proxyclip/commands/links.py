"""Values the CLI links from the data to the model, given on the model side: applied as the data option, or refused.

The dataset config is the one source of a benchmark's vocabulary and protocol values (docs/method.md §7); the CLI
builds the segmentor with them (`LINKS` in cli.py). A linked segmentor option that is set on the model side
(`--model.segmentor.init_args.prob_thd 0.9`, a model file, inline YAML) is applied exactly as the data option
(`--data.init_args.prob_thd 0.9`) would be: the DataModule validates it and the link carries it, so the run's config
shows one value. It is refused, in one paragraph naming the option to use, where the data side was also set to
another value on purpose (a data flag, or any argument after the model-side value), and where the data has no option
of that name (the vocabulary: names_file / vocabulary). Options of the LightningModule itself that are linked
(background_name, ignore_index, dataset_name) are refused by the parser; `link_target_paragraph` words that.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from ..errors import ProxyCLIPError
from .command_line import option
from .layers import Layer, LayeredLine

SEGMENTOR = "model.segmentor.init_args."
_MISSING = object()
# where the value is set instead, for a linked option the data has no option of the same name for
DATA_SIDE = {
    "class_names": "the vocabulary comes from the data config: --data.init_args.names_file FILE (a benchmark or your "
                   "own dataset: one class per line) or, for predict, --data.init_args.vocabulary \"sky, horse\"",
    "background_name": "class 0's name comes from the data: --data.init_args.background \"sky; wall\" for predict; a "
                       "benchmark's is fixed by its DataModule",
    "ignore_index": "the ignored label value is the DataModule's label protocol (for PC459 and ADE847, "
                    "--data.init_args.legacy_ignore_255 true ignores 255 instead of 65535)",
    "dataset_name": "the dataset's name is its DataModule's `dataset_name` (a class attribute of your subclass)",
}


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def link_target_paragraph(target: str, source: str) -> str:
    """The refusal of a value given for `target` (e.g. "model.ignore_index"), which the CLI sets from the data's
    `source` (e.g. "ignore_index")."""
    where = DATA_SIDE.get(source, f"set it on the data side: --data.init_args.{source}")
    return (f"--{target} cannot be given: the CLI sets the model's {target.rsplit('.', 1)[-1]} from the data config, so "
            f"a value given for the model would be replaced. Instead, {where}.")


def _refusal(model_side: str, name: str, value: Any, data_side: Layer, data_value: Any, source: str,
             when: str) -> ProxyCLIPError:
    return ProxyCLIPError(
        f"{model_side} sets the segmentor's {name} to {_show(value)}, but {data_side.text} sets the data's {source} "
        f"to {_show(data_value)}{when}; the CLI builds the segmentor with the data's value, so one of the two would be "
        f"ignored. Give one value, on the data side after the configs: --data.init_args.{source} {_show(value)} (or "
        f"{_show(data_value)}).")


def _refuse_data_side_conflicts(line: LayeredLine, target: str, value: Any, source: str) -> None:
    """Raise _refusal when a layer sets the data's `source` in or after the layer that set the model side's `value`,
    or sets it on purpose (an option, not a config file) to another value."""
    name, data_key = target[len(SEGMENTOR):], f"data.init_args.{source}"
    model_setters = [i for i, _ in line.setters(target)]
    last = model_setters[-1] if model_setters else len(line.layers)
    model_side = line.layers[last].text if model_setters else f"--{target} {_show(value)}"
    data_value: Any = _MISSING
    for i, layer in line.setters(data_key):
        changed, data_value = layer.get(data_key) != data_value, layer.get(data_key)
        on_purpose = layer.key in (f"--data.{source}", f"--data.init_args.{source}") or (changed and not layer.is_file)
        if (i >= last and changed) or (on_purpose and data_value != value):
            when = " after it" if i > last else " in the same argument" if i == last else ""
            raise _refusal(model_side, name, value, layer, data_value, source, when)


def apply_model_side_links(line: LayeredLine, config: Any, links: Mapping[str, str]) -> list[str]:
    """The data options that apply the linked segmentor values set on the model side (e.g.
    `--data.init_args.prob_thd=0.9`), to be added after every layer of `line`; a ProxyCLIPError refuses a conflict.
    `config` is the parsed subcommand configuration of `line` without its protocol layers."""
    added = []
    for source, target in links.items():
        if not target.startswith(SEGMENTOR):
            continue                              # the LightningModule's own: the parser refuses them
        name = target[len(SEGMENTOR):]
        value, data_value = line.final(target, config), line.final(f"data.init_args.{source}", config, _MISSING)
        if value is None or value == data_value:
            continue
        if data_value is _MISSING:
            where = DATA_SIDE.get(source, f"the data config has no `{source}` option to carry it")
            raise ProxyCLIPError(f"The segmentor's {name} is given on the model side ({_show(value)}), but the CLI sets "
                                 f"it from the data config, so it would be replaced: {where}.")
        _refuse_data_side_conflicts(line, target, value, source)
        added.append(option(f"data.init_args.{source}", value))
    return added
