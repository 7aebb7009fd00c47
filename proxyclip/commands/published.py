"""The published numbers as data: each method's paper / README mIoU per preset (`proxyclip/methods/<method>/published.yaml`),
read, checked and looked up here, so that a results table can show the published value beside the measured one.

A file holds the method's repository and commit and two lists: `rows`, each {preset (a configs/model file stem), clip,
vfm, benchmark, miou, source ("README.md:<line> @<commit>", or a doc's file:line that transcribes an image, or
"paper Table N"), quote (the source line's text, holding the number), optional column, setting, note, quoted_by,
reproduced}, and `none`, each {preset, reason}: the presets the sources give no number for. A row with a `setting` was
run differently from the bare preset (e.g. another mask source): `published_value` returns it only when asked for that
setting, never as the preset's own number. A row with `quoted_by` ("owner/name") comes from a third party's table
(docs/published_quotations.md), not the method's own source; `reproduced: true` when that table marks the number as the
third party's own run. Its source then says so ("as quoted by", "as reproduced by"). Nothing here imports torch.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from ..config_files import read_config
from ..method.last_block import LAST_BLOCKS, method_folder
from ..method.last_block.discovery import method_presets
from ..shipped_configs import packaged_configs, shown_name

#: The benchmarks' config names, as datamodules.DATAMODULES and eval_all.BENCHMARKS name them (tests/test_published.py
#: checks the two agree; kept here so that reading the numbers needs no torch).
BENCHMARKS = ("voc21", "context60", "coco_object", "voc20", "context59", "coco_stuff", "cityscapes", "ade20k",
              "pc459", "ade847")
ROW_KEYS = {"preset", "clip", "vfm", "benchmark", "miou", "source", "quote"}
OPTIONAL_ROW_KEYS = {"column", "setting", "note", "quoted_by", "reproduced"}
#: A third party's repository, as GitHub spells it (owner/name).
REPOSITORY = re.compile(r"^[\w.-]+/[\w.-]+$")
#: A source names a file and line ("README.md:70 @b56bd30", "proxyclip/methods/resclip/README.md:69 (...)") or a paper table.
SOURCE = re.compile(r"^(?:[\w./-]+\.(?:md|txt|py|rst):\d+(?:-\d+)?\b.*|paper Table \d+\b.*)$")


def published_files() -> dict[str, Path]:
    """{method: its published.yaml} for every registered method that has one (in its folder)."""
    files = {method: method_folder(method) / "published.yaml" for method in LAST_BLOCKS}
    return {method: path for method, path in files.items() if path.is_file()}


def preset_names() -> list[str]:
    """The stems of the model presets: the shipped ones (configs/model/*.yaml) and every registered method's own
    (presets/*.yaml in its folder, a distribution's method too)."""
    return sorted({p.stem for p in (packaged_configs() / "model").glob("*.yaml")} | set(method_presets()))


def preset_file(name: str) -> Path | None:
    """The file of the preset `name`: configs/model/<name>.yaml, else the presets/<name>.yaml of a registered
    method's folder (a distribution's method); None for a name that is no preset."""
    shipped = packaged_configs() / "model" / f"{name}.yaml"
    return shipped if shipped.is_file() else method_presets().get(name)


def published_file_name(method: str) -> str:
    """The method's published.yaml as a results table names it: proxyclip/methods/<method>/published.yaml for a
    shipped method, the file's path for a distribution's."""
    return shown_name(method_folder(method) / "published.yaml", f"proxyclip/methods/{method}/published.yaml")


def load_published(folder: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """{method: the file's content} for every method's published.yaml (or every `<method>.yaml` in `folder`)."""
    files = published_files() if folder is None else {p.stem: p for p in sorted(Path(folder).glob("*.yaml"))}
    data = {}
    for method, path in files.items():
        content = dict(read_config(path))   # the one reader of YAML files (proxyclip.config_files)
        content.setdefault("rows", [])
        content.setdefault("none", [])
        data[method] = content
    return data


def number_in_quote(miou: float, quote: str) -> bool:
    """Whether `miou` is one of the numbers printed in `quote` (bold marks and the like ignored)."""
    return any(abs(float(token) - miou) < 1e-9 for token in re.findall(r"\d+(?:\.\d+)?", quote))


def validate(data: dict[str, dict[str, Any]], presets: Iterable[str] | None = None) -> list[str]:
    """Every problem found, one line each (empty when the data are sound): a row's keys, benchmark, number (0-100, and
    printed in its quote), source; a (preset, benchmark, setting) given twice; a preset both given rows and marked
    none; and, for `presets` (default: the shipped ones), a preset neither given rows nor marked none, or named in the
    data but not a preset."""
    presets = set(preset_names() if presets is None else presets)
    problems: list[str] = []
    covered: dict[str, str] = {}
    marked: dict[str, str] = {}
    seen: set[tuple[str, str, str | None]] = set()
    for method, content in data.items():
        problems += _file_problems(method, content)
        for i, row in enumerate(content["rows"]):
            where = f"{method} row {i} ({row.get('preset')}, {row.get('benchmark')})"
            keys = _key_problem(where, row)
            if keys:
                problems.append(keys)
                continue                                  # a row without its keys: nothing more to check
            problems += _row_problems(where, row, str(content.get("repository")))
            key = (row["preset"], row["benchmark"], row.get("setting"))
            if key in seen:
                problems.append(f"{where}: given twice (setting {key[2]!r})")
            seen.add(key)
            covered.setdefault(row["preset"], method)
        problems += _none_problems(method, content["none"], marked)
    return problems + _coverage_problems(presets, covered, marked)


def _file_problems(method: str, content: dict[str, Any]) -> list[str]:
    """A file's own keys: method (its file's name), repository, commit."""
    problems = [f"{method}: no {key}" for key in ("method", "repository", "commit") if not content.get(key)]
    if content.get("method") not in (None, method):
        problems.append(f"{method}: method {content.get('method')!r} differs from the file's name")
    return problems


def _key_problem(where: str, row: dict[str, Any]) -> str | None:
    """A row's missing and unknown keys, or None."""
    missing, unknown = ROW_KEYS - set(row), set(row) - ROW_KEYS - OPTIONAL_ROW_KEYS
    return f"{where}: missing {sorted(missing)}, unknown {sorted(unknown)}" if missing or unknown else None


def _row_problems(where: str, row: dict[str, Any], repository: str) -> list[str]:
    """One row's benchmark, number (0-100, printed in its quote), source and quotation fields (its keys are sound)."""
    problems = [f"{where}: unknown benchmark {row['benchmark']!r}"] if row["benchmark"] not in BENCHMARKS else []
    miou = row["miou"]
    if isinstance(miou, bool) or not isinstance(miou, (int, float)) or not 0 <= miou <= 100:
        problems.append(f"{where}: miou {miou!r} is not a number in 0-100")
    elif not number_in_quote(float(miou), str(row["quote"])):
        problems.append(f"{where}: {miou} does not appear in its quote {row['quote']!r}")
    if not SOURCE.match(str(row["source"])):
        problems.append(f"{where}: source {row['source']!r} names neither a file:line nor a paper table")
    quoted_by = row.get("quoted_by")
    if "quoted_by" in row and (not REPOSITORY.match(str(quoted_by)) or str(quoted_by).lower() == repository.lower()):
        problems.append(f"{where}: quoted_by {quoted_by!r} is not another repository's owner/name")
    if "reproduced" in row and (not isinstance(row["reproduced"], bool) or not quoted_by):
        problems.append(f"{where}: reproduced {row['reproduced']!r} must be true or false, with quoted_by")
    return problems


def _none_problems(method: str, entries: list[dict[str, Any]], marked: dict[str, str]) -> list[str]:
    """The `none` entries of one file (each needs a preset and a reason; a preset once); fills `marked`."""
    problems = []
    for entry in entries:
        if not entry.get("preset") or not str(entry.get("reason") or "").strip():
            problems.append(f"{method}: a `none` entry without preset or reason: {entry!r}")
            continue
        if entry["preset"] in marked:
            problems.append(f"{method}: {entry['preset']} marked none twice ({marked[entry['preset']]})")
        marked[entry["preset"]] = method
    return problems


def _coverage_problems(presets: set[str], covered: dict[str, str], marked: dict[str, str]) -> list[str]:
    """Across the files: a preset with rows and marked none, one with neither, a name that is no preset."""
    problems = [f"{preset}: has published rows ({covered[preset]}) and is marked none ({marked[preset]})"
                for preset in sorted(set(covered) & set(marked))]
    problems += [f"{preset}: no published numbers and not marked none (add rows to proxyclip/methods/<method>/"
                 "published.yaml, or a `none` entry with the reason)" for preset in sorted(presets - set(covered) - set(marked))]
    problems += [f"{preset}: named in a published.yaml but not a preset (configs/model/{preset}.yaml or a method's "
                 "presets/)" for preset in sorted((set(covered) | set(marked)) - presets)]
    return problems


@lru_cache(maxsize=None)
def _shipped() -> dict[str, dict[str, Any]]:
    return load_published()


def published_rows(preset: str, data: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every published row of `preset` (those with a `setting` included), in the files' order."""
    data = _shipped() if data is None else data
    return [row for content in data.values() for row in content["rows"] if row.get("preset") == preset]


def row_source(row: dict[str, Any]) -> str:
    """The row's source, and whose table it is when not the method's own: "... (as quoted by owner/name)", or "as
    reproduced by" for a number the third party marks as its own run."""
    if not row.get("quoted_by"):
        return str(row["source"])
    return f"{row['source']} (as {'reproduced' if row.get('reproduced') else 'quoted'} by {row['quoted_by']})"


def published_value(preset: str, benchmark: str, setting: str | None = None,
                    data: dict[str, dict[str, Any]] | None = None) -> tuple[float, str] | None:
    """(miou, source) published for `preset` (a configs/model file stem) on `benchmark`, run as the preset is
    (`setting` None) or in the named setting; None when no such number is published. The source names a third
    party's table (row_source)."""
    for row in published_rows(preset, data):
        if row["benchmark"] == benchmark and row.get("setting") == setting:
            return float(row["miou"]), row_source(row)
    return None


def none_reason(preset: str, data: dict[str, dict[str, Any]] | None = None) -> str | None:
    """Why `preset` has no published numbers, when it is marked so; else None."""
    data = _shipped() if data is None else data
    for content in data.values():
        for entry in content["none"]:
            if entry.get("preset") == preset:
                return str(entry.get("reason"))
    return None


def method_of(preset: str, data: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The file's content (method, repository, commit, rows, none) that gives `preset` rows or marks it none."""
    data = _shipped() if data is None else data
    for content in data.values():
        if any(r.get("preset") == preset for r in content["rows"]) or any(e.get("preset") == preset for e in content["none"]):
            return content
    return None
