"""The pictures of an eval_all folder, drawn from its summary rows: methods.png, cost_vs_miou.png, compare_panels/.

methods.png: mIoU per benchmark, a bar per setting, the published value (summary rows' `published`) as a black tick;
a cell without a number shows the table's word for it (failed, missing, ...) where its bar would be.
cost_vs_miou.png: each setting's images/s (summary rows' `cost`) against its average mIoU: avg8 when every plotted
setting has it, else the mean over the benchmarks every plotted setting has a number for (the axis says which); not
drawn, with a line saying why, when no setting has images/s. compare_panels/: compare_panels.py.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from ..shell.charts import cost_chart, methods_chart, setting_colours
from .compare_panels import FOLDER, write_compare_panels


def measured(value: Any) -> float | None:
    """A summary cell as a number, None for a missing, failed or NaN one."""
    return value if isinstance(value, float) and not math.isnan(value) else None


def bar_or_word(value: Any) -> float | str | None:
    """What methods.png draws for a summary cell: its number, else the word the table's cell starts with ("failed",
    "missing", "kept", "unsupported", "nan"); None where the setting has no result for the benchmark."""
    if value is None or measured(value) is not None:
        return value
    return str(value).split(":", 1)[0].strip() or "?"


def plotted_speeds(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the rows with a positive images/s, {setting: its cost's images/s or None})."""
    speeds = {row["setting"]: (row.get("cost") or {}).get("images_per_s") for row in rows}
    plotted = [row for row in rows if isinstance(speeds[row["setting"]], (int, float)) and speeds[row["setting"]] > 0]
    return plotted, speeds


def cost_points(columns: Sequence[str], rows: Sequence[dict[str, Any]],
                titles: dict[str, str]) -> tuple[list[tuple[str, float, float]], str] | str:
    """([(setting, images/s, average mIoU)], the average's name), or the reason no point can be drawn."""
    plotted, speeds = plotted_speeds(rows)
    if not plotted:
        return "no setting has images/s (summary rows' cost)"
    if all(row.get("avg8") is not None for row in plotted):
        return [(row["setting"], float(speeds[row["setting"]]), row["avg8"]) for row in plotted], "avg8"
    common = [b for b in columns if all(measured(row["mIoU"].get(b)) is not None for row in plotted)]
    if not common:
        return "no benchmark has a number for every setting with images/s"
    points = [(row["setting"], float(speeds[row["setting"]]), sum(row["mIoU"][b] for b in common) / len(common))
              for row in plotted]
    return points, f"mean over {', '.join(titles.get(b, b) for b in common)}"


def write_pictures(output: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]], titles: dict[str, str]) -> str:
    """Write methods.png, cost_vs_miou.png and compare_panels/ into `output` (a picture that cannot be drawn is removed,
    never left from an earlier call); returns the line for summary.md that names what was written."""
    if not rows:
        return ""
    settings = [row["setting"] for row in rows]
    colours = setting_colours(settings)
    miou = {row["setting"]: {titles.get(b, b): bar_or_word(row["mIoU"].get(b)) for b in columns} for row in rows}
    published = {row["setting"]: {titles.get(b, b): entry["mIoU"] for b, entry in row.get("published", {}).items()}
                 for row in rows}
    chart = methods_chart([titles.get(b, b) for b in columns], settings, miou, published, colours=colours)
    Image.fromarray(chart).save(output / "methods.png")
    ticks = any(published.values())         # only a table with published numbers speaks of them
    written = ["methods.png (mIoU per benchmark" + ("; a black tick: the published number)" if ticks else ")")]
    cost = cost_points(columns, rows, titles)
    if isinstance(cost, str):
        (output / "cost_vs_miou.png").unlink(missing_ok=True)
        print(f"[eval_all] cost_vs_miou.png not drawn: {cost}", flush=True)
    else:
        points, average = cost
        Image.fromarray(cost_chart(points, average, colours=colours)).save(output / "cost_vs_miou.png")
        written.append(f"cost_vs_miou.png (images/s against {average})")
    if FOLDER in settings:                  # a setting of that name: its results are there, never replaced
        print(f"[eval_all] {FOLDER}/ not drawn: a setting (model config) is named {FOLDER}", flush=True)
    elif panels := write_compare_panels(output, columns, rows, titles):
        written.append(f"{FOLDER}/ ({len(panels)} picture{'' if len(panels) == 1 else 's'}: the same images segmented "
                       "by every setting)")
    else:
        print(f"[eval_all] {FOLDER}/ not drawn: no result holds panels' arrays (panels/NNN_<image>.npz, which `test` "
              "writes beside its panels; none with --model.num_panels 0)", flush=True)
    return "Pictures: " + "; ".join(written) + "."
