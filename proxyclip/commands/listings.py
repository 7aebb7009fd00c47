"""The lists of methods, presets and benchmarks that README.md, docs/*.md and the help show, rendered from the
registries (`LAST_BLOCKS`, the shipped presets, `DATAMODULES` and their configs) so that no list is kept by hand.

A document keeps each list between markers, on one line (a list inside a sentence or a table cell) or around a
block (a table):

    <!-- generated: methods -->
    | method | ... |
    <!-- /generated -->

    python -m proxyclip.commands.listings --write    # rewrite every generated block from the registries
    python -m proxyclip.commands.listings --check    # exit 1, naming the stale blocks (tests/test_listings.py)
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Callable

from datamodules import DATAMODULES

from ..config_files import read_config
from ..method.last_block import LAST_BLOCKS
from ..method.method_options import yaml_value
from ..shipped_configs import packaged_configs
from .protocols import DEFAULT_METHOD   # the package's own method; the others are "the baselines"
from .published import preset_names

REPOSITORY = Path(__file__).resolve().parents[2]
COMMAND = "python -m proxyclip.commands.listings --write"
BLOCK = re.compile(r"<!-- generated: (?P<name>[\w-]+) -->(?P<body>.*?)<!-- /generated -->", re.S)
TINY = "tiny_"                   # tiny random presets: for smoke runs, never for numbers


def documents() -> list[Path]:
    """The files that may hold generated blocks: the README and the docs (method folders' READMEs hold none)."""
    return [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md"))]


def method_title(name: str) -> str:
    return LAST_BLOCKS[name].title or name


def method_titles(baselines_only: bool = False) -> list[str]:
    """Every method's display name in listing order (ProxyCLIP first); `baselines_only`: without ProxyCLIP."""
    return [method_title(name) for name in LAST_BLOCKS if not (baselines_only and name == DEFAULT_METHOD)]


def _preset(name: str) -> dict[str, Any]:
    return dict(read_config(packaged_configs() / "model" / f"{name}.yaml").get("segmentor") or {})


def presets_by_method(tiny: bool = False) -> dict[str, list[str]]:
    """{method: its shipped presets}, methods in listing order; `tiny`: the tiny random presets instead."""
    found: dict[str, list[str]] = {name: [] for name in LAST_BLOCKS}
    for preset in preset_names():
        if preset.startswith(TINY) == tiny:
            found.setdefault(_preset(preset).get("method") or DEFAULT_METHOD, []).append(preset)
    return found


def _code(names: list[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def methods_table() -> str:
    rows = [[method_title(name), f"`{name}`", _code(presets) or "-", block.summary or "-"]
            for (name, block), presets in zip(LAST_BLOCKS.items(), presets_by_method().values())]
    return _table(["method", "`method:`", "presets (`configs/model/<preset>.yaml`)", "its last block"], rows)


def presets_table() -> str:
    rows = []
    for method, presets in presets_by_method().items():
        for preset in presets:
            spec = _preset(preset)
            activation = {True: ", QuickGELU", False: ", GELU"}.get(spec.get("clip_quick_gelu"), "")
            clip = f"{spec.get('clip_model')} {spec.get('clip_pretrained')}{activation}"
            vfm = spec.get("vfm") or LAST_BLOCKS[method].default_vfm
            rows.append([f"`{preset}`", method_title(method), clip, f"`{vfm}`" if vfm else "none"])
    return _table(["preset", "method", "CLIP", "VFM"], rows)


def _data_config(name: str, folder: str = "data") -> dict[str, Any]:
    """A benchmark's data side (configs/data/<name>.yaml), or the common protocol's (configs/common/<name>.yaml)."""
    config = read_config(packaged_configs() / folder / f"{name}.yaml")
    return dict((config.get("data", config) or {}).get("init_args") or {})


def _label_note(module: type) -> str:
    notes = [f"`{module.label_dir}/<id>{module.label_suffix}`"]
    if module.reduce_zero_label:
        notes.append("0 ignored (reduce_zero_label)")
    if module.ignore_index != 255:
        notes.append(f"{module.ignore_index} ignored")
    return ", ".join(notes)


def benchmarks_table() -> str:
    """Each benchmark's protocol values as its data config gives them (docs/method.md §7)."""
    rows = []
    for name, module in DATAMODULES.items():
        values = _data_config(name)
        rows.append([module.title or name, f"`{name}`", str(module.num_classes), str(tuple(values.get("scale") or ())),
                     str(values.get("prob_thd")), f"{values.get('crop_size')} / {values.get('stride')}",
                     _label_note(module)])
    return _table(["benchmark", "name", "classes", "resize (long, short)", "prob_thd", "crop / stride", "labels"], rows)


def datasets_table() -> str:
    """Where each benchmark's files are below `root` (the README's Datasets)."""
    rows = []
    for name, module in DATAMODULES.items():
        root = str(_data_config(name).get("root") or "").removeprefix("data/")
        split = f"`{module.split_file}`" if module.split_file else "every image"
        rows.append([module.title or name, f"`{root}`", f"`{module.image_dir}/<id>{module.image_suffix}`",
                     _label_note(module), split])
    return _table(["benchmark", "root", "images", "labels", "images listed in"], rows)


def common_values_table() -> str:
    """Each benchmark's common protocol (configs/common/<benchmark>.yaml, docs/protocols.md; the window, 224 / 112 for
    every benchmark, is stated below the table, which tests/test_protocols.py reads back)."""
    rows = []
    for name in DATAMODULES:
        values = _data_config(name, "common")
        rows.append([name, f"`{values.get('names_file')}`", str((values.get("scale") or [None, None])[1]),
                     str(values.get("prob_thd"))])
    return _table(["benchmark", "vocabulary (`names_file`)", "resize short side", "prob_thd"], rows)


def post_processing_table() -> str:
    """What the common protocol switches off in each method, and what it keeps (docs/protocols.md)."""
    def options(values: dict[str, Any]) -> str:
        return ", ".join(f"`{key}: {yaml_value(value)}`" for key, value in values.items()) or "-"

    rows = [[method_title(name), options(block.post_processing_off),
             "; ".join(f"{step}: {why}" for step, why in block.common_exceptions.items()) or "-"]
            for name, block in LAST_BLOCKS.items()]
    return _table(["method", "`method_kwargs` under `common` (`post_processing_off`)",
                   "kept under `common` (`common_exceptions`)"], rows)


LISTINGS: dict[str, Callable[[], str]] = {
    "methods": methods_table,
    "presets": presets_table,
    "benchmarks": benchmarks_table,
    "datasets": datasets_table,
    "common-values": common_values_table,
    "post-processing": post_processing_table,
    "method-titles": lambda: ", ".join(method_titles()),
    "baseline-titles": lambda: ", ".join(method_titles(baselines_only=True)),
    "benchmark-names": lambda: _code(list(DATAMODULES)),
    "tiny-presets": lambda: _code([preset for presets in presets_by_method(tiny=True).values() for preset in presets]),
}


def render(name: str) -> str:
    """A block's body: a one-line list stays inline; a table goes on lines of its own between the markers."""
    if name not in LISTINGS:
        raise KeyError(f"no listing named {name!r}; the listings: {', '.join(LISTINGS)}")
    text = LISTINGS[name]()
    return f"\n{text}\n" if "\n" in text else text


def regenerate(text: str) -> str:
    return BLOCK.sub(lambda m: f"<!-- generated: {m['name']} -->{render(m['name'])}<!-- /generated -->", text)


def stale_blocks(paths: list[Path] | None = None) -> dict[Path, list[str]]:
    """{document: the names of its blocks that differ from what the registries give}."""
    stale = {}
    for path in documents() if paths is None else paths:
        names = list(dict.fromkeys(m["name"] for m in BLOCK.finditer(path.read_text()) if m["body"] != render(m["name"])))
        if names:
            stale[path] = names
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proxyclip.commands.listings", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite every generated block of README.md and docs/")
    action.add_argument("--check", action="store_true", help="exit 1 when a generated block is stale, naming it")
    action.add_argument("--show", choices=list(LISTINGS), help="print one listing")
    args = parser.parse_args(argv)
    if args.show:
        print(LISTINGS[args.show]())
        return 0
    stale = stale_blocks()
    if args.check:
        for path, names in stale.items():
            print(f"{path.relative_to(REPOSITORY)}: stale generated blocks: {', '.join(names)}", file=sys.stderr)
        if stale:
            print(f"run: {COMMAND}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(regenerate(path.read_text()))
        print(f"rewrote {path.relative_to(REPOSITORY)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
