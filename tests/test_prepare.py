"""`python -m datamodules.prepare`: COCO-Object and Cityscapes label conversion, and `check`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fake_datasets import write_ade847, write_cityscapes, write_coco, write_voc

from datamodules import COCOObjectDataModule
from datamodules.prepare import main

REPO = Path(__file__).resolve().parents[1]

# COCO's 80 thing categories as (category id, name), in COCO order (ids 1..90 with 11 unused, e.g. 12).
COCO_THINGS = [
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"),
    (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"),
    (54, "sandwich"), (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"),
    (60, "donut"), (61, "cake"), (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"),
    (67, "dining table"), (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"),
    (76, "keyboard"), (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"),
    (89, "hair drier"), (90, "toothbrush"),
]

# cityscapesScripts labels.py: (name, id, trainId) for ids 0..33.
CITYSCAPES_LABELS = [
    ("unlabeled", 0, 255), ("ego vehicle", 1, 255), ("rectification border", 2, 255), ("out of roi", 3, 255),
    ("static", 4, 255), ("dynamic", 5, 255), ("ground", 6, 255), ("road", 7, 0), ("sidewalk", 8, 1),
    ("parking", 9, 255), ("rail track", 10, 255), ("building", 11, 2), ("wall", 12, 3), ("fence", 13, 4),
    ("guard rail", 14, 255), ("bridge", 15, 255), ("tunnel", 16, 255), ("pole", 17, 5), ("polegroup", 18, 255),
    ("traffic light", 19, 6), ("traffic sign", 20, 7), ("vegetation", 21, 8), ("terrain", 22, 9), ("sky", 23, 10),
    ("person", 24, 11), ("rider", 25, 12), ("car", 26, 13), ("truck", 27, 14), ("bus", 28, 15),
    ("caravan", 29, 255), ("trailer", 30, 255), ("train", 31, 16), ("motorcycle", 32, 17), ("bicycle", 33, 18),
]


def expected_coco_object(raw: np.ndarray) -> np.ndarray:
    out = np.full(raw.shape, 255, np.uint8)  # values COCO-Stuff never uses -> ignore
    out[(raw >= 91) & (raw <= 181)] = 0  # stuff -> background
    out[raw == 255] = 0  # unlabeled -> background
    for k, (category_id, _) in enumerate(COCO_THINGS, start=1):
        out[raw == category_id - 1] = k
    return out


def test_coco_object_vocabulary_matches_the_category_order():
    names = (REPO / "datamodules" / "class_names" / "coco_object.txt").read_text().splitlines()
    assert len(names) == 81 and len(COCO_THINGS) == 80
    assert [n.strip() for n in names[1:]] == [name for _, name in COCO_THINGS]


def test_coco_object_conversion(tmp_path):
    root = write_coco(tmp_path)
    ann = root / "annotations" / "val2017"
    for p in ann.glob("*_instanceTrainIds.png"):
        p.unlink()
    # one map holding every raw value 0..255
    every = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(every).save(ann / "000000999999.png")
    assert main(["coco-object", str(root)]) == 0
    raws = sorted(p for p in ann.glob("*.png") if "_" not in p.stem)
    assert len(raws) == 7
    for raw_path in raws:
        out_path = ann / f"{raw_path.stem}_instanceTrainIds.png"
        with Image.open(out_path) as im:
            assert im.mode == "L"
            out = np.array(im)
        raw = np.array(Image.open(raw_path))
        assert np.array_equal(out, expected_coco_object(raw))
    out = np.array(Image.open(ann / "000000999999_instanceTrainIds.png")).reshape(-1)
    assert out[0] == 1 and out[89] == 80 and out[12] == 12 and out[10] == 11  # person, toothbrush, stop sign
    assert out[11] == 255 and out[90] == 255  # unused ids 12 and 91
    assert (out[91:182] == 0).all() and out[255] == 0 and (out[182:255] == 255).all()
    assert sorted(set(out.tolist())) == list(range(81)) + [255]
    assert not list(ann.glob(".*"))  # no temporary files left
    # the result loads as COCO-Object (the fake's images have no 999999: drop that label first)
    (ann / "000000999999.png").unlink()
    (ann / "000000999999_instanceTrainIds.png").unlink()
    dm = COCOObjectDataModule(root=str(root), scale=(2048, 336), prob_thd=0.25, names_file="coco_object")
    dm.setup()
    assert len(dm.dataset) == 6 and dm.dataset[0]["label"].max() <= 80


def test_coco_object_is_idempotent(tmp_path, capsys):
    root = write_coco(tmp_path)
    ann = root / "annotations" / "val2017"
    for p in ann.glob("*_instanceTrainIds.png"):
        p.unlink()
    assert main(["coco-object", str(root)]) == 0
    outputs = sorted(ann.glob("*_instanceTrainIds.png"))
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs}
    capsys.readouterr()
    assert main(["coco-object", str(root)]) == 0
    assert "wrote 0 files, skipped 6" in capsys.readouterr().out
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in outputs} == stamps
    outputs[0].write_bytes(b"stale")
    assert main(["coco-object", str(root), "--overwrite"]) == 0
    assert "wrote 6 files" in capsys.readouterr().out
    assert outputs[0].read_bytes() == stamps[outputs[0]][1]
    assert oct(outputs[0].stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_cityscapes_conversion(tmp_path, capsys):
    root = write_cityscapes(tmp_path)
    gt = root / "gtFine" / "val"
    for p in gt.rglob("*_gtFine_labelTrainIds.png"):
        p.unlink()
    extra = gt / "lindau" / "lindau_999999_000019_gtFine_labelIds.png"
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(extra)
    assert main(["cityscapes", str(root)]) == 0
    table = np.full(256, 255, np.uint8)
    for _, label_id, train_id in CITYSCAPES_LABELS:
        table[label_id] = train_id
    sources = sorted(gt.rglob("*_gtFine_labelIds.png"))
    assert len(sources) == 7
    for src in sources:
        out = np.array(Image.open(str(src).replace("_labelIds.png", "_labelTrainIds.png")))
        assert np.array_equal(out, table[np.array(Image.open(src))])
    out = np.array(Image.open(str(extra).replace("_labelIds.png", "_labelTrainIds.png"))).reshape(-1)
    assert out[7] == 0 and out[26] == 13 and out[33] == 18 and out[0] == 255 and (out[34:] == 255).all()
    assert sorted(set(out.tolist())) == list(range(19)) + [255]
    capsys.readouterr()
    assert main(["cityscapes", str(root)]) == 0
    assert "wrote 0 files, skipped 7" in capsys.readouterr().out


def test_check_reports_problems(tmp_path, capsys):
    root = write_voc(tmp_path)
    assert main(["check", str(root), "--dataset", "voc21"]) == 0
    assert "voc21: 6 samples" in capsys.readouterr().out
    assert main(["check", str(root), "--dataset", "voc20"]) == 0
    # planted: an out-of-range value, a size mismatch and a missing label
    labels = sorted((root / "SegmentationClass").glob("2007_*.png"))
    raw = np.array(Image.open(labels[0]))
    raw[5, 5] = 40
    Image.fromarray(raw).save(labels[0])
    Image.fromarray(np.zeros((3, 4), np.uint8)).save(labels[1])
    labels[2].unlink()
    capsys.readouterr()
    assert main(["check", str(root), "--dataset", "voc21"]) == 1
    out = capsys.readouterr().out
    assert str(labels[0]) in out and "40" in out
    assert str(labels[1]) in out and "4x3" in out
    assert str(labels[2]) in out and "1 missing label file" in out


def test_check_extra_labels_and_tif(tmp_path, capsys):
    root = write_ade847(tmp_path)
    assert main(["check", str(root), "--dataset", "ade847"]) == 0
    extra = root / "annotations_detectron2" / "validation" / "ADE_val_00009999.tif"
    Image.fromarray(np.zeros((5, 5), np.uint16)).save(extra, format="TIFF")
    capsys.readouterr()
    assert main(["check", str(root), "--dataset", "ade847"]) == 1
    assert str(extra) in capsys.readouterr().out


def test_check_missing_root(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope"), "--dataset", "cityscapes"]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err


def test_prepare_missing_inputs(tmp_path, capsys):
    assert main(["coco-object", str(tmp_path)]) == 2
    assert "annotations/val2017" in capsys.readouterr().err
    assert main(["cityscapes", str(tmp_path)]) == 2
    assert "gtFine/val" in capsys.readouterr().err


@pytest.mark.subprocess
def test_module_entry_point():
    """`python -m datamodules.prepare --help` works, and the data never imports the method."""
    code = ("import runpy, sys\n"
            "sys.argv = ['prepare', '--help']\n"
            "try:\n"
            "    runpy.run_module('datamodules.prepare', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as exc:\n"
            "    assert exc.code == 0, exc.code\n"
            "import datamodules.io, datamodules.transforms, datamodules.base\n"
            "print('METHOD MODULES', sorted(m for m in sys.modules if m.split('.')[0] == 'proxyclip'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert "coco-object" in out.stdout and "check" in out.stdout
    assert "METHOD MODULES []" in out.stdout
