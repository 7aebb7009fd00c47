"""`main.py` end to end on fake datasets in the real on-disk layouts, with the tiny random model."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from lightning.pytorch import seed_everything

from conftest import REPO_ROOT, TINY_CONFIG
from fake_datasets import WRITERS

TINY = str(TINY_CONFIG)


def run_main(*args, timeout=600, cwd=REPO_ROOT):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, str(REPO_ROOT / "main.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def cli_test_args(name, root, out_dir, *extra):
    return ["test", "--config", f"configs/{name}.yaml", "--model", TINY, "--data.init_args.root", str(root),
            "--model.output_dir", str(out_dir), "--trainer.logger", "false", "--trainer.default_root_dir", str(out_dir), *extra]


def ground_truth_counts(datamodule):
    """G_c straight from the label files, independent of the model."""
    datamodule.setup("test")
    counts = np.zeros(datamodule.num_classes, np.int64)
    for item in datamodule.dataset:
        label = item["label"].numpy()
        label = label[(label != datamodule.ignore_index) & (label < datamodule.num_classes)]
        counts += np.bincount(label, minlength=datamodule.num_classes)
    return counts


@pytest.mark.subprocess
def test_voc21_end_to_end_in_a_subprocess(tmp_path):
    from proxyclip import build_segmentor
    from proxyclip.shell.metric import SegmentationMetric
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
    assert [row["name"] for row in report["per_class"]][:3] == ["background", "aeroplane", "bicycle"]
    assert report["counts"]["label"] == ground_truth_counts(datamodule).tolist()
    counts = np.array([report["counts"][k] for k in ("intersect", "union", "pred", "label")])
    assert report["mIoU"] == pytest.approx(100 * np.nanmean(counts[0] / counts[1]))
    assert report["aAcc"] == pytest.approx(100 * counts[0].sum() / counts[3].sum())
    assert report["config"]["data"]["init_args"]["root"] == str(root)

    # the same numbers from the library, outside Lightning (the CLI seeds 0 before building the model)
    seed_everything(0)
    seg = build_segmentor(TINY, class_names=datamodule.class_names, prob_thd=datamodule.prob_thd,
                          crop_size=datamodule.crop_size, stride=datamodule.stride, numerics=datamodule.numerics)
    metric = SegmentationMetric(21, 255)
    for batch in datamodule.test_dataloader():
        for pred, label in zip(seg.segment_batch(batch["images"], [l.shape for l in batch["labels"]]), batch["labels"]):
            metric.update(pred, label)
    assert metric.counts.tolist() == counts.tolist()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("ade847", "pc459") else n   # 847 / 459 classes
                                  for n in sorted(WRITERS)])
def test_every_benchmark_config_end_to_end(name, tmp_path):
    from proxyclip.commands.cli import cli_main

    root = WRITERS[name](tmp_path / "data", n=2)   # 2 images: the 459- and 847-class canvases are the cost
    cli = cli_main(cli_test_args(name, root, tmp_path / "out", "--data.init_args.batch_size", "2"))
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    datamodule = cli.datamodule
    assert report["num_images"] == len(datamodule.dataset) > 0
    assert report["num_classes"] == datamodule.num_classes == len(cli.model.segmentor.class_names)
    assert report["counts"]["label"] == ground_truth_counts(datamodule).tolist()
    assert sum(report["counts"]["pred"]) >= sum(report["counts"]["label"])   # every counted pixel predicted once
    assert cli.model.segmentor.prob_thd == datamodule.prob_thd
    assert cli.model.segmentor.crop_size == datamodule.crop_size


def ddp_run(tmp_path, root, devices, output_dir):
    """`main.py test` as the README shows it, on `devices` CPU processes (gloo), from `tmp_path` as the working
    folder: with the default logger and panels unless `output_dir`; a hang fails through the timeout."""
    out = tmp_path / f"run_{devices}_{'out' if output_dir else 'default'}"
    out.mkdir()
    args = ["test", "--config", str(REPO_ROOT / "configs/voc21.yaml"), "--model", TINY, "--data.init_args.root", str(root),
            "--trainer.accelerator", "cpu", "--trainer.devices", str(devices), "--model.num_panels", "5"]
    if devices > 1:
        args += ["--trainer.strategy", "ddp"]
    if output_dir:
        args += ["--model.output_dir", str(out / "results")]
    result = run_main(*args, cwd=out, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = out / "results" if output_dir else out / "outputs" / "lightning_logs" / "version_0"
    return json.loads((folder / "metrics.json").read_text()), folder, result


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory):
    """7 VOC images (an odd number: the processes hold different numbers) and the one-process reference."""
    tmp = tmp_path_factory.mktemp("ddp")
    root = WRITERS["voc21"](tmp / "data", n=7)
    reference, folder, _ = ddp_run(tmp, root, 1, output_dir=False)
    return tmp, root, reference, sorted(p.name for p in (folder / "panels").glob("*.png"))


@pytest.mark.subprocess
@pytest.mark.parametrize("devices, output_dir", [(2, False), (3, False), (2, True), (3, True)])
def test_ddp_equals_one_process(ddp_data, devices, output_dir):
    """Multi-process runs finish (no collective reached by rank 0 alone) and count every image once."""
    tmp, root, reference, reference_panels = ddp_data
    report, folder, result = ddp_run(tmp, root, devices, output_dir)
    assert reference["num_images"] == report["num_images"] == 7
    # every process's images, timed by the slowest process's loop; process 0's own share said as such
    assert reference["timing"]["images"] == report["timing"]["images"] == 7 and report["timing"]["processes"] == devices
    assert 0 < report["timing"]["rank0_images"] < 7 and report["timing"]["rank0_test_loop_s"] <= report["timing"]["test_loop_s"]
    assert f"7 images on {devices} processes in" in result.stdout
    assert "sync_dist" not in result.stderr      # the logged aAcc / mIoU / mAcc are global already: no warning
    assert report["counts"] == reference["counts"]
    assert (report["aAcc"], report["mIoU"], report["mAcc"]) == (reference["aAcc"], reference["mIoU"], reference["mAcc"])
    assert (folder / "per_class_iou.png").is_file()
    # the panels are of the dataset's first 5 images, whichever process held them
    assert sorted(p.name for p in (folder / "panels").glob("*.png")) == reference_panels and len(reference_panels) == 5
    assert reference_panels[0].startswith("000_2007_000000")


@pytest.mark.subprocess
def test_ddp_predict_with_default_folders(tmp_path):
    """`predict` on 2 processes with 3 images (ranks hold different numbers of batches): finishes, writes all."""
    from PIL import Image

    rng = np.random.default_rng(2)
    for name in ("a", "b", "c"):
        (tmp_path / "photos").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"{name}.png")
    result = run_main("predict", "--config", str(REPO_ROOT / "configs/demo.yaml"), "--model", TINY,
                      "--data.init_args.inputs", str(tmp_path / "photos"), "--trainer.accelerator", "cpu",
                      "--trainer.devices", "2", "--trainer.strategy", "ddp", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    written = sorted(p.name for p in (tmp_path / "outputs").rglob("*_labels.png"))
    assert written == ["a_labels.png", "b_labels.png", "c_labels.png"]
    assert "Segmented 3 images" in result.stdout          # each image by one process (no padding by repeats)


@pytest.mark.subprocess
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
    (["test", "--config", "configs/voc21.yaml", "--model", TINY, "--model.segmentor.vfm", "dino_vitb9", "--data.init_args.root", "{root}"], "dino_vitb8"),
    (["test", "--config", "configs/voc21.yaml", "--model", TINY, "--data.init_args.names_file", "voc20", "--data.init_args.root", "{root}"], "20 class lines"),
])
def test_user_errors_are_one_paragraph(args, needle, tmp_path, capsys):
    from proxyclip.commands.cli import cli_main

    root = WRITERS["voc21"](tmp_path / "data", n=1)
    with pytest.raises(SystemExit) as info:                 # in this process: the same printing, no start-up cost
        cli_main([a.format(root=root) for a in args])
    err = capsys.readouterr().err
    assert info.value.code != 0
    assert needle in err
    assert "Traceback" not in err


MY_DATASET = '''
from datamodules import SegmentationDataModule


class MyDataModule(SegmentationDataModule):
    """my_dataset: images/val/<id>.jpg and labels/val/<id>.png (0..2, 255 ignore)."""
    dataset_name = "my_dataset"
    num_classes = 3
    image_dir = "images/val"
    label_dir = "labels/val"
    image_suffix = ".jpg"
    label_suffix = ".png"
'''

MY_CONFIG = '''
class_path: my_dataset.MyDataModule
init_args:
  root: data/my_dataset
  names_file: my_dataset_names.txt
  scale: [2048, 336]
  prob_thd: 0.1
  crop_size: 224
  stride: 112
'''


def write_my_dataset(folder):
    """The README's "Add a dataset": a DataModule subclass, a YAML whose paths are relative to its own folder, a
    names file and 3 images; returns (the YAML, the PYTHONPATH that finds the subclass)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = folder / "data" / "my_dataset"
    for i, (h, w) in enumerate([(40, 60), (70, 50), (33, 33)]):
        (root / "images/val").mkdir(parents=True, exist_ok=True)
        (root / "labels/val").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / f"images/val/{i}.jpg")
        label = rng.integers(0, 3, (h, w)).astype(np.uint8)
        label[:3] = 255
        Image.fromarray(label).save(root / f"labels/val/{i}.png")
    (folder / "my_dataset.py").write_text(MY_DATASET)
    (folder / "my_dataset_names.txt").write_text("background; wall\ncat\ndog\n")
    (folder / "my_dataset.yaml").write_text(MY_CONFIG)
    return folder / "my_dataset.yaml", f"{REPO_ROOT}{os.pathsep}{folder}"


@pytest.mark.subprocess
def test_add_a_dataset_as_the_readme_shows(tmp_path):
    """A made-up dataset evaluated through main.py test from another working folder: the YAML's relative `root` and
    `names_file` are found next to it, as jsonargparse finds a config's own relative paths."""
    config, pythonpath = write_my_dataset(tmp_path / "mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": pythonpath}
    result = subprocess.run([sys.executable, str(REPO_ROOT / "main.py"), "test", "--model", TINY, "--data", str(config),
                             "--model.output_dir", str(tmp_path / "out"), "--trainer.logger", "false"],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert report["dataset"] == "my_dataset" and report["num_images"] == 3
    assert [row["queries"] for row in report["per_class"]] == ["background; wall", "cat", "dog"]
    assert (tmp_path / "out" / "per_class_iou.png").is_file() and len(list((tmp_path / "out" / "panels").glob("*.png"))) == 3
    recorded = report["config"]["data"]["init_args"]           # the paths that ran, usable from any folder
    assert (recorded["root"], recorded["names_file"]) == (str(tmp_path / "mine/data/my_dataset"),
                                                          str(tmp_path / "mine/my_dataset_names.txt"))


@pytest.mark.subprocess
def test_eval_all_runs_a_dataset_config_beside_the_benchmarks(tmp_path):
    """`--datasets voc21 path/to/my_dataset.yaml`: one more column, named by the file; its root from its config."""
    config, pythonpath = write_my_dataset(tmp_path / "mine")
    WRITERS["voc21"](tmp_path / "data", n=1)
    env = {**os.environ, "PYTHONPATH": pythonpath}
    run = subprocess.run([sys.executable, "-m", "proxyclip.eval_all", "--model", TINY, "--datasets", "voc21", str(config),
                          "--data-root", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--model.num_panels", "0"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["benchmarks"] == ["voc21", "my_dataset"]
    mine = json.loads((tmp_path / "out" / "tiny_random" / "my_dataset" / "metrics.json").read_text())
    assert mine["num_images"] == 3 and summary["rows"][0]["mIoU"]["my_dataset"] == mine["mIoU"]


@pytest.mark.subprocess
def test_the_installed_command_finds_its_configs_from_any_folder(installed, tmp_path):
    """From a folder outside the checkout, the README's names of the shipped configs, and the files they name (the
    demo's image and vocabulary), resolve in the installed package; the help describes this package."""
    bin_dir, cwd, env = installed

    def proxyclip(*args):
        return subprocess.run([str(bin_dir / "proxyclip"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=600)

    voc = WRITERS["voc21"](tmp_path / "data", n=1)
    tested = proxyclip("test", "--config", "configs/voc21.yaml", "--model", "configs/model/tiny_random.yaml",
                       "--data.init_args.root", str(voc), "--model.output_dir", str(tmp_path / "out"),
                       "--trainer.logger", "false", "--model.num_panels", "0")
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["num_images"] == 1
    data_file = proxyclip("test", "--data", "configs/data/voc21.yaml", "--model", "configs/model/tiny_random.yaml",
                          "--data.init_args.root", str(voc), "--print_config")
    assert data_file.returncode == 0 and "names_file: voc21" in data_file.stdout, data_file.stderr[-3000:]
    predicted = proxyclip("predict", "--config", "configs/demo.yaml", "--model", "configs/model/tiny_random.yaml",
                          "--prediction_writer.output_dir", str(tmp_path / "demo"), "--trainer.logger", "false")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    legend = json.loads((tmp_path / "demo" / "astronaut_legend.json").read_text())
    assert legend["image"].endswith("datamodules/assets/astronaut.jpg") and str(REPO_ROOT) not in legend["image"]
    assert list(cwd.iterdir()) == []
    for args, needle in ((["--help"], "open-vocabulary semantic segmentation"), (["test", "--help"], "Evaluate a benchmark"),
                         (["predict", "--help"], "Segment your own images")):
        shown = proxyclip(*args)
        assert shown.returncode == 0 and needle in shown.stdout and "Lightning Trainer" not in shown.stdout, args


@pytest.mark.subprocess
def test_print_config_output_runs_as_given(tmp_path):
    root = WRITERS["voc21"](tmp_path / "data", n=2)
    printed = run_main(*cli_test_args("voc21", root, tmp_path / "out"), "--print_config")
    assert printed.returncode == 0, printed.stderr[-3000:]
    (tmp_path / "config.yaml").write_text(printed.stdout)
    result = run_main("test", "--config", str(tmp_path / "config.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert report["num_images"] == 2


def test_a_config_naming_the_former_class_name_still_runs(tmp_path):
    """A saved config from before the rename (class_path ...ProxyCLIPSegmentor) runs; metrics.json records the method
    and its options as they ran, defaults filled in (issue 20)."""
    from proxyclip.commands.cli import cli_main
    from proxyclip.commands.eval_all import resolved_config

    root = WRITERS["voc21"](tmp_path / "data", n=1)
    code, printed, errors = resolved_config(cli_test_args("voc21", root, tmp_path / "out"))
    assert code == 0, errors
    config = yaml.safe_load(printed)
    assert config["model"]["segmentor"]["class_path"].endswith(".TrainingFreeSegmentor")
    config["model"]["segmentor"]["class_path"] = "proxyclip.method.segmentor.ProxyCLIPSegmentor"
    config["model"]["segmentor"]["init_args"]["method_kwargs"] = {"gamma": 2.5}
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(config))
    cli = cli_main(["test", "--config", str(tmp_path / "old.yaml")])
    assert type(cli.model.segmentor).__name__ == "TrainingFreeSegmentor"
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert report["num_images"] == 1
    assert (report["method"], report["method_options"]) == ("proxyclip", {"beta": 1.2, "gamma": 2.5})


@pytest.mark.subprocess
def test_every_model_option_has_a_help_line():
    from proxyclip.commands.cli import ProxyCLIPCLI  # noqa: F401  (the CLI reads these docstrings)
    import inspect
    from proxyclip import TrainingFreeSegmentor
    from proxyclip.shell.module import ProxyCLIPModule

    for cls in (TrainingFreeSegmentor, ProxyCLIPModule):
        doc = inspect.getdoc(cls)
        for name in inspect.signature(cls.__init__).parameters:
            if name != "self":
                assert f"\n    {name}: " in doc or f"\n{name}: " in doc, f"{cls.__name__}.{name} has no help line"
    help_text = run_main("test", "--model.segmentor.help", "proxyclip.TrainingFreeSegmentor").stdout
    flat = " ".join(help_text.split())
    assert "beta (float, 1.2)" in flat and "sliding-window crop side" in flat
    from proxyclip.method.last_block import LAST_BLOCKS
    from proxyclip.method.method_options import method_option_types, yaml_value

    documented = " ".join(inspect.getdoc(TrainingFreeSegmentor).split("method_kwargs: ", 1)[1].split("\n    vfm: ")[0].split())
    for method in LAST_BLOCKS:           # every method's own options, with their defaults, on method_kwargs' help line
        assert f"{method}: " in documented, method
        for name, (_, default) in method_option_types(method).items():
            shown = yaml_value(default)          # as YAML, so that it pastes as printed
            assert f"{name} (" in documented and f", {shown})" in documented, (method, name)


@pytest.mark.subprocess
def test_predict_folder_mixed_sizes_inline_vocabulary(tmp_path):
    from PIL import Image

    from proxyclip.shell.visualize import display_scale

    rng = np.random.default_rng(1)
    sizes = {"a.jpg": (40, 70), "b.png": (90, 50), "sub/c.jpg": (64, 64)}
    for name, (h, w) in sizes.items():
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / "photos" / name)
    out = tmp_path / "out"
    result = run_main("predict", "--config", "configs/demo.yaml", "--model", TINY,
                      "--data.init_args.inputs", str(tmp_path / "photos"), "--data.init_args.vocabulary", "sky; cloud, horse, grass",
                      "--data.init_args.background", "wall; floor", "--data.init_args.prob_thd", "0.3",
                      "--data.init_args.batch_size", "2", "--prediction_writer.output_dir", str(out), "--trainer.logger", "false",
                      "--trainer.default_root_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    for name, (h, w) in sizes.items():
        stem = Path(name).stem
        assert np.asarray(Image.open(out / f"{stem}_labels.png")).shape == (h, w)
        assert Image.open(out / f"{stem}_overlay.png").size[1] == h * display_scale(h, w)   # small pictures enlarged
        legend = json.loads((out / f"{stem}_legend.json").read_text())
        assert [c["name"] for c in legend["classes"]] == ["wall; floor", "sky; cloud", "horse", "grass"]
        assert sum(c["pixels"] for c in legend["classes"]) == h * w


def test_mae_follows_the_benchmark_crop(tmp_path, monkeypatch):
    """Cityscapes (crop 224) with an MAE model: the VFM sees 224 x 224 crops, its native table untouched."""
    from proxyclip.commands.cli import cli_main

    root = WRITERS["cityscapes"](tmp_path / "data", n=1)
    seen = []
    cli = cli_main(cli_test_args("cityscapes", root, tmp_path / "out", "--model.segmentor.vfm", "mae_vit_base",
                                 "--model.segmentor.vfm_kwargs", "{depth: 1, embed_dim: 32, num_heads: 2}",
                                 "--model.num_panels", "0"))
    vfm = cli.model.segmentor.vfm
    monkeypatch.setattr(vfm, "extract", lambda x, extract=vfm.extract: seen.append(tuple(x.shape[-2:])) or extract(x))
    cli.trainer.test(cli.model, datamodule=cli.datamodule)
    assert cli.model.segmentor.crop_size == 224 and set(seen) == {(224, 224)}
    assert vfm.model.pos_embed.shape[1] == 1 + 14 * 14
