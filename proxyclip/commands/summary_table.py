"""eval_all's table: summary.md / .csv / .json of every setting under a results folder, and its pictures.

One row per setting (`<output>/<setting>/`), one column per benchmark in the papers' order, the papers' averages
(avg8, avg_bg, avg_nobg; only over a complete group), the published number beside a measured one where a shipped
preset ran as it is (published.py), and the cost columns (run_cost.py); then the pictures (pictures.py). A
protocol's folder (`<output>/common/`) has its own table (eval_protocols.py).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

from datamodules import DATAMODULES

from . import run_cost
from .eval_protocols import is_setting_folder, ran_common
from .pictures import write_pictures
from .published import method_of, published_file_name, published_value

BENCHMARKS = tuple(DATAMODULES)   # the papers' table order
TITLES = {name: cls.title or name for name, cls in DATAMODULES.items()}
# The papers' averages, by benchmark name (a registry's order may change; these groups do not): the benchmarks
# whose vocabulary has a background class, those without one, and the eight together.
WITH_BACKGROUND = ("voc21", "context60", "coco_object")
WITHOUT_BACKGROUND = ("voc20", "context59", "coco_stuff", "cityscapes", "ade20k")
# summary.md's first line: which protocol the numbers ran under (docs/protocols.md)
PROTOCOL_LINES = {"original": "each method under its own protocol (its repository's per-benchmark values)",
                  "common": "every method under the common protocol (configs/common/<benchmark>.yaml: the same "
                            "vocabulary, resize, window and thresholds)"}
AVERAGES = {"avg8": WITH_BACKGROUND + WITHOUT_BACKGROUND, "avg_bg": WITH_BACKGROUND, "avg_nobg": WITHOUT_BACKGROUND}


def collect(output: Path) -> dict[str, dict[str, float | str]]:
    """{setting: {benchmark: mIoU or the missing/failed text}} over every result folder under `output`."""
    table: dict[str, dict[str, float | str]] = {}
    for bench_dir in sorted(d for d in output.glob("*/*/") if is_setting_folder(d.parent, output)):
        run_file, metrics_file = bench_dir / "run.json", bench_dir / "metrics.json"
        status = json.loads(run_file.read_text()).get("status", "ok") if run_file.is_file() else "ok"
        if status != "ok":
            cell: float | str = status
        elif metrics_file.is_file():
            miou = json.loads(metrics_file.read_text()).get("mIoU")
            cell = "nan" if miou is None else float(miou)
        else:
            continue
        table.setdefault(bench_dir.parent.name, {})[bench_dir.name] = cell
    return table


def summary_rows(table: dict[str, dict[str, float | str]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(benchmark columns in the papers' order, rows in the table's order with the averages, None where one is
    undefined)."""
    present = {name for cells in table.values() for name in cells}
    columns = [b for b in BENCHMARKS if b in present] + sorted(present - set(BENCHMARKS))
    rows = []
    for setting, cells in table.items():
        row: dict[str, Any] = {"setting": setting, "mIoU": {b: cells[b] for b in columns if b in cells}}
        for avg, members in AVERAGES.items():  # an average only over a complete group, as the papers report it
            values = [cells.get(b) for b in members]
            row[avg] = sum(values) / len(values) if all(isinstance(v, float) for v in values) else None
        rows.append(row)
    return columns, rows


def collect_published(output: Path) -> dict[str, dict[str, tuple[float, str]]]:
    """{setting: {benchmark: (published mIoU, source)}} for the finished runs under `output` that ran a shipped preset
    as it is (run.json's `preset`, shipped_preset) and whose preset has a published number for that benchmark."""
    found: dict[str, dict[str, tuple[float, str]]] = {}
    for run_file in sorted(output.glob("*/*/run.json")):
        run = json.loads(run_file.read_text())
        setting, benchmark = run_file.parent.parent.name, run_file.parent.name
        if run.get("status", "ok") != "ok" or run.get("preset") != setting or ran_common(run):
            continue
        value = published_value(setting, benchmark)
        if value is not None:
            found.setdefault(setting, {})[benchmark] = value
    return found


def add_published(rows: list[dict[str, Any]], columns: list[str], published: dict[str, dict[str, tuple[float, str]]]) -> None:
    """Each row's `published` key: {benchmark: mIoU, source, difference} for its measured cells that have one."""
    # the published number beside a measured one, never in its place: only for a measured cell of a shipped preset run
    # as it is (collect_published); its own key (JSON) / columns (CSV) / parenthesis (markdown)
    for row in rows:
        values = published.get(row["setting"], {})
        row["published"] = {b: {"mIoU": values[b][0], "source": values[b][1], "difference": row["mIoU"][b] - values[b][0]}
                            for b in columns if b in values
                            and isinstance(row["mIoU"].get(b), float) and not math.isnan(row["mIoU"][b])}


def csv_row(row: dict[str, Any], columns: list[str], with_published: list[str]) -> list[Any]:
    """One setting's summary.csv line: its cells, the published number and difference after each benchmark that has
    one in some row, the averages and the cost; floats as repr, undefined ones empty."""
    cells = []
    for b in columns:
        cells.append(row["mIoU"].get(b, ""))
        if b in with_published:
            entry = row["published"].get(b)
            cells += [entry["mIoU"], entry["difference"]] if entry else ["", ""]
    cells += [row[a] for a in AVERAGES] + run_cost.csv_cells(row["cost"])
    return [row["setting"]] + ["" if v is None else repr(v) if isinstance(v, float) else v for v in cells]


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    """summary.csv: a header, then one line per setting (csv_row)."""
    with_published = [b for b in columns if any(b in row["published"] for row in rows)]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["setting"] + [c for b in columns for c in ([b, f"{b}_published", f"{b}_difference"]
                                                                      if b in with_published else [b])] + list(AVERAGES)
                        + list(run_cost.COLUMNS))
        for row in rows:
            writer.writerow(csv_row(row, columns, with_published))


def markdown_value(value: float | str | None) -> str:
    """A cell as summary.md shows it: two decimals, - when undefined, a long error cut short."""
    if value is None or value == "":
        return "-"
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.2f}"
    text = str(value)
    if text.startswith("failed:") and len(text) > 100:  # a long error; the CSV/JSON and run.json keep all of it
        text = text[:97] + "..."
    return text.replace("|", "\\|")


def markdown_cell(row: dict[str, Any], b: str) -> str:
    """A benchmark's cell, with the published number and the difference in parentheses where there is one."""
    entry = row["published"].get(b)
    if entry is None:
        return markdown_value(row["mIoU"].get(b))
    shown = round(round(row["mIoU"][b], 2) - entry["mIoU"], 2) + 0.0   # the shown numbers' difference; no -0.00
    return f"{markdown_value(row['mIoU'][b])} (published {entry['mIoU']!r}, {shown:+.2f})"


def markdown_table(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """summary.md's table lines: the header, its alignment, one line per setting."""
    lines = ["| setting | " + " | ".join([TITLES.get(b, b) for b in columns] + list(AVERAGES) + list(run_cost.TITLES)) + " |",
             "|---|" + "---:|" * (len(columns) + len(AVERAGES) + len(run_cost.TITLES))]
    return lines + ["| " + " | ".join([row["setting"]] + [markdown_cell(row, b) for b in columns]
                                      + [markdown_value(row[a]) for a in AVERAGES]
                                      + run_cost.markdown_cells(row["cost"])) + " |"
                    for row in rows]


def published_note(rows: list[dict[str, Any]]) -> str:
    """What the parentheses mean and where each published number comes from; empty when no row has one."""
    sourced = [row for row in rows if row["published"]]
    if not sourced:
        return ""
    note = ("\nIn parentheses: the number published for that preset and benchmark (not measured here) and the "
            "measured one's difference from it. The method's authors published it, unless its source says "
            "\"as quoted by\" (their number in another repository's table) or \"as reproduced by\" (that "
            "repository's own run); sources (proxyclip/methods/<method>/published.yaml):\n\n")
    for row in sourced:
        origin = method_of(row["setting"]) or {}
        note += (f"- {row['setting']} ({origin.get('repository')}, {published_file_name(origin['method']) if origin.get('method') else '?'}): "
                 + "; ".join(f"{TITLES.get(b, b)} {entry['source']}" for b, entry in row["published"].items()) + "\n")
    return note


def write_summary(output: Path, first: Sequence[str] = (), protocol: str = "original") -> str:
    """Write summary.md / .csv / .json and the pictures (pictures.py) into `output`, the settings named in `first`
    (this run's models, in their order) as the first rows, the folder's other settings after them; returns the
    markdown."""
    table = collect(output)
    order = [name for name in first if name in table] + [name for name in table if name not in first]
    columns, rows = summary_rows({name: table[name] for name in order})
    add_published(rows, columns, collect_published(output))
    costs, places = run_cost.collect_cost(output)      # what each setting cost: its own key, the last columns
    for row in rows:
        row["cost"] = costs.get(row["setting"])
    (output / "summary.json").write_text(json.dumps({"benchmarks": columns, "averages": AVERAGES, "rows": rows}, indent=2))
    write_csv(output / "summary.csv", columns, rows)
    markdown = f"mIoU (%), single scale, {PROTOCOL_LINES[protocol]}; avg8 over {', '.join(TITLES[b] for b in AVERAGES['avg8'])}.\n\n"
    markdown += "\n".join(markdown_table(columns, rows)) + "\n" + run_cost.cost_note(costs, places)
    markdown += published_note(rows)
    pictures = write_pictures(output, columns, rows, TITLES)
    markdown += f"\n{pictures}\n" if pictures else ""
    (output / "summary.md").write_text(markdown)
    return markdown
