"""What a run shows a person: overlays of the pixels the model saw, names drawn in a font that has them, counted nouns."""
import json

import cv2
import numpy as np
from PIL import Image

from conftest import REPO_ROOT, TINY_CONFIG
from datamodules.io import read_image
from proxyclip.shell import fonts, visualize
from proxyclip.shell.results import markdown_summary


def test_a_16_bit_image_is_overlaid_as_the_model_saw_it(tmp_path, capsys):
    """A 16-bit PNG: the model sees OpenCV's decoding (value >> 8); the overlay shows those pixels, not PIL's clipped
    ones. Names no installed font draws are said once and drawn as '?'; one image is "1 image"."""
    from proxyclip.commands.cli import cli_main

    height, width = 180, 200                   # no enlargement for display: the overlay's left part is the picture
    ramp = np.linspace(0, 65535, height * width).reshape(height, width).astype(np.uint16)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), ramp)
    assert Image.open(path).mode.startswith("I;16")
    seen = read_image(path)                    # what the data side hands the model
    assert seen.dtype == np.uint8 and seen.max() == 255 and np.array_equal(seen[..., 0], (ramp >> 8).astype(np.uint8))
    out = tmp_path / "out"
    cli_main(["predict", "--config", str(REPO_ROOT / "configs/demo.yaml"), "--model", str(TINY_CONFIG),
              "--data.init_args.inputs", str(path), "--data.init_args.vocabulary", "café, 中文, sky",
              "--prediction_writer.output_dir", str(out), "--trainer.logger", "false"])
    printed = capsys.readouterr()
    labels = np.asarray(Image.open(out / "deep_labels.png"))
    overlay = np.asarray(Image.open(out / "deep_overlay.png"))[:height, :width]
    assert np.array_equal(overlay, visualize.overlay(seen, labels, visualize.palette(3)))
    assert "Segmented 1 image: files in" in printed.out
    notes = [line for line in printed.err.splitlines() if line.startswith("note: no installed font")]
    assert len(notes) == 1 and "中 文" in notes[0] and "'中文'" in notes[0]
    assert json.loads((out / "deep_legend.json").read_text())["classes"][1]["name"] == "中文"   # the files keep the names


def test_accented_names_are_drawn_and_undrawable_ones_are_question_marks():
    unassigned = "\u0378"                      # a code point no font has
    assert fonts.undrawable(["café", "crème brûlée", "Ärger", "naïve"]) == []
    assert fonts.undrawable(["café", f"x{unassigned}"]) == [unassigned]
    chart = lambda name: visualize.iou_bar_chart([name], [50.0])   # noqa: E731
    assert not np.array_equal(chart("café"), chart(f"caf{unassigned}"))   # é is a glyph, not the missing-glyph box
    assert np.array_equal(chart(f"caf{unassigned}"), chart("caf?"))       # what cannot be drawn is a "?"
    legend = lambda name: visualize.legend_panel([name], [(0, 0, 0)])     # noqa: E731
    assert not np.array_equal(legend("Ärger"), legend(f"{unassigned}rger"))
    assert fonts.font_note(["café", "sky"]) is None
    assert "no installed font draws" in fonts.font_note([f"x{unassigned}"])


def test_one_of_a_thing_is_not_plural():
    report = {"dataset": "voc21", "num_images": 1, "num_classes": 21, "aAcc": 50.0, "mIoU": 40.0, "mAcc": 45.0,
              "per_class": []}
    assert markdown_summary(report).startswith("# voc21: 1 image, 21 classes")
    assert markdown_summary({**report, "num_images": 2}).startswith("# voc21: 2 images, 21 classes")
