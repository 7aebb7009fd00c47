"""`main.py` end to end on fake datasets in the real on-disk layouts, with the tiny random model."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import seed_everything

from conftest import REPO_ROOT, TINY_CONFIG
from fake_datasets import WRITERS

TINY = str(TINY_CONFIG)


def run_main(*args, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, str(REPO_ROOT / "main.py"), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def cli_test_args(name, root, out_dir, *extra):
    return ["test", "--config", f"configs/{name}.yaml", "--model", TINY, "--data.init_args.root", str(root),
            "--model.output_dir", str(out_dir), "--trainer.logger", "false", *extra]


def ground_truth_counts(datamodule):
    """G_c straight from the label files, independent of the model."""
    datamodule.setup("test")
    counts = np.zeros(datamodule.num_classes, np.int64)
    for item in datamodule.dataset:
        label = item["label"].numpy()
        label = label[(label != datamodule.ignore_index) & (label < datamodule.num_classes)]
        counts += np.bincount(label, minlength=datamodule.num_classes)
    return counts


def test_voc21_end_to_end_in_a_subprocess(tmp_path):
    from proxyclip import build_segmentor
    from proxyclip.metrics import SegmentationMetric
    from datamodules import VOCDataModule
    import yaml

    root = WRITERS["voc21"](tmp_path / "data")
    result = run_main(*cli_test_args("voc21", root, tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mIoU" in result.stdout + result.stderr
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    for name in ("per_class.csv", "summary.md"):
        assert (tmp_path / "out" / name).is_file()

    data_cfg = yaml.safe_load((REPO_ROOT / "configs/data/voc21.yaml").read_text())["init_args"]
    datamodule = VOCDataModule(**{**data_cfg, "root": str(root)})
    assert report["num_images"] == 6 and report["num_classes"] == 21
    assert report["counts"]["label"] == ground_truth_counts(datamodule).tolist()
    counts = np.array([report["counts"][k] for k in ("intersect", "union", "pred", "label")])
    assert report["mIoU"] == pytest.approx(100 * np.nanmean(counts[0] / counts[1]))
    assert report["aAcc"] == pytest.approx(100 * counts[0].sum() / counts[3].sum())
    assert report["config"]["data"]["init_args"]["root"] == str(root)

    # the same numbers from the library, outside Lightning (the CLI seeds 0 before building the model)
    seed_everything(0)
    seg = build_segmentor(TINY, class_names=datamodule.class_names, prob_thd=datamodule.prob_thd,
                          crop_size=datamodule.crop_size, stride=datamodule.stride)
    metric = SegmentationMetric(21, 255)
    for batch in datamodule.test_dataloader():
        for pred, label in zip(seg.segment_batch(batch["images"], [l.shape for l in batch["labels"]]), batch["labels"]):
            metric.update(pred, label)
    assert metric.counts.tolist() == counts.tolist()


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_benchmark_config_end_to_end(name, tmp_path):
    from proxyclip.cli import cli_main

    root = WRITERS[name](tmp_path / "data")
    cli = cli_main(cli_test_args(name, root, tmp_path / "out", "--data.init_args.batch_size", "2"))
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    datamodule = cli.datamodule
    assert report["num_images"] == len(datamodule.dataset) > 0
    assert report["num_classes"] == datamodule.num_classes == len(cli.model.segmentor.class_names)
    assert report["counts"]["label"] == ground_truth_counts(datamodule).tolist()
    assert sum(report["counts"]["pred"]) >= sum(report["counts"]["label"])   # every counted pixel predicted once
    assert cli.model.segmentor.prob_thd == datamodule.prob_thd
    assert cli.model.segmentor.crop_size == datamodule.crop_size


def test_ddp_two_processes_equal_one(tmp_path):
    """7 images on 1 process and on 2 CPU processes (gloo): identical counts, every image once."""
    root = WRITERS["voc21"](tmp_path / "data", n=7)
    one = run_main(*cli_test_args("voc21", root, tmp_path / "one"))
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_main(*cli_test_args("voc21", root, tmp_path / "two", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
                              "--trainer.strategy", "ddp"))
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert a["num_images"] == b["num_images"] == 7
    assert a["counts"] == b["counts"]
    assert (a["aAcc"], a["mIoU"], a["mAcc"]) == (b["aAcc"], b["mIoU"], b["mAcc"])


def test_predict_demo_with_tiny_model(tmp_path):
    result = run_main("predict", "--config", "configs/demo.yaml", "--model", TINY,
                      "--prediction_writer.output_dir", str(tmp_path), "--prediction_writer.save_probabilities", "true",
                      "--trainer.logger", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    from PIL import Image

    labels = np.asarray(Image.open(tmp_path / "astronaut_labels.png"))
    assert labels.shape == (512, 512) and labels.max() < 6
    overlay = Image.open(tmp_path / "astronaut_overlay.png")
    assert overlay.size[1] == 512 and overlay.size[0] > 512          # the image, then its legend panel
    legend = json.loads((tmp_path / "astronaut_legend.json").read_text())
    assert [c["name"] for c in legend["classes"]][:2] == ["wall; background", "person; astronaut; face"]
    probs = np.load(tmp_path / "astronaut_probs.npz")["probs"]
    assert probs.shape == (6, 512, 512)


@pytest.mark.parametrize("args, needle", [
    (["fit"], "invalid choice"),
    (["test", "--config", "configs/voc21.yaml", "--model", TINY, "--data.init_args.root", "/nonexistent/VOC2012"], "/nonexistent/VOC2012"),
    (["test", "--config", "configs/voc21.yaml", "--model", TINY, "--model.segmentor.vfm", "dino_vitb9"], "dino_vitb8"),
])
def test_user_errors_are_one_paragraph(args, needle):
    result = run_main(*args)
    assert result.returncode != 0
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
