"""eval_all's pictures: methods.png, and compare_panels/ (the same images segmented by every setting), drawn from
the panels' arrays each `test` keeps; a setting without a result is left out of them."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, TINY_CONFIG
from fake_datasets import write_voc
from proxyclip.commands.compare_panels import PER_ROW, methods_panel
from proxyclip.commands.eval_all import main
from proxyclip.commands.summary_table import write_summary
from proxyclip.shell.visualize import palette


def sizes(folder):
    return {p.name: Image.open(p).size for p in sorted(folder.glob("*.png"))}


@pytest.mark.subprocess
def test_eval_all_draws_every_setting_beside_the_others(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    write_voc(tmp_path / "data", n=2)
    other = tmp_path / "tiny_other.yaml"
    shutil.copy(TINY_CONFIG, other)
    out = tmp_path / "out"
    assert main(["--model", str(TINY_CONFIG), str(other), "--datasets", "voc21", "--data-root", str(tmp_path / "data"),
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cost_vs_miou.png not drawn" not in printed          # each setting's metrics.json records its images/s
    assert Image.open(out / "cost_vs_miou.png").mode == "RGB"
    chart = Image.open(out / "methods.png")
    assert chart.mode == "RGB" and chart.size[0] > 200 and chart.size[1] > 200
    arrays = np.load(next((out / "tiny_random" / "voc21" / "panels").glob("000_*.npz")))
    assert arrays["image"].shape == (*arrays["label"].shape, 3) and arrays["pred"].shape == arrays["label"].shape
    two = sizes(out / "compare_panels" / "voc21")
    panels = sorted(p.stem for p in (out / "tiny_random" / "voc21" / "panels").glob("*.png"))
    assert list(two) == [f"{stem}.png" for stem in panels] and len(panels) == 2      # one picture per image
    assert "Pictures: methods.png" in (out / "summary.md").read_text()
    assert "compare_panels/ (2 pictures" in (out / "summary.md").read_text()

    # a third setting (its results copied): every picture is wider
    shutil.copytree(out / "tiny_other", out / "tiny_third")
    write_summary(out, ["tiny_random", "tiny_other", "tiny_third"])
    three = sizes(out / "compare_panels" / "voc21")
    assert list(three) == list(two) and all(three[n][0] > two[n][0] for n in two)
    # ... without one image's panel: that picture leaves it out
    (out / "tiny_third" / "voc21" / "panels" / f"{panels[1]}.npz").unlink()
    write_summary(out, ["tiny_random", "tiny_other", "tiny_third"])
    assert sizes(out / "compare_panels" / "voc21") == {**three, f"{panels[1]}.png": two[f"{panels[1]}.png"]}
    # ... whose run failed (its files are no result): left out of every picture, as of methods.png's bars
    run = out / "tiny_third" / "voc21" / "run.json"
    run.write_text(json.dumps({**json.loads(run.read_text()), "status": "failed: out of memory"}))
    write_summary(out, ["tiny_random", "tiny_other", "tiny_third"])
    assert sizes(out / "compare_panels" / "voc21") == two


def test_predictions_wrap_into_rows():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    label = rng.integers(0, 3, (40, 60))
    colours = palette(3, "voc21")
    preds = [(f"setting {i}", np.full((40, 60), i % 3)) for i in range(PER_ROW + 1)]
    one_row = methods_panel(image, label, preds[:PER_ROW], ["a", "b", "c"], 255, colours, "title")
    two_rows = methods_panel(image, label, preds, ["a", "b", "c"], 255, colours, "title")
    assert one_row.shape[1] == two_rows.shape[1] and two_rows.shape[0] > one_row.shape[0] + 100
    fewer = methods_panel(image, label, preds[:2], ["a", "b", "c"], 255, colours, "title")
    assert fewer.shape[1] < one_row.shape[1]
    # the fifth prediction (class 1 everywhere), enlarged to 160 x 240, is drawn in the second row, under the first
    # prediction (right of image and ground truth)
    title, first_row = 18, 18 + 160
    second_row = two_rows[title + first_row + 4: title + 2 * first_row + 4]        # the legend is below it
    rows, cols = np.nonzero((second_row == colours[1]).all(axis=-1))
    assert len(rows) >= 160 * 240 and cols.min() >= 2 * 240 and rows.min() >= 18
