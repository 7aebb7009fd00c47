"""Ctrl-C in every phase (start-up imports, parsing, model building, the test loop, the predict loop, on every DDP
rank): one line on stderr that says what is kept, exit code 130, no traceback (item 11). Each signal is sent once a
marker shows the process is in that phase, as a terminal sends it: to the whole process group."""
import os
import signal
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO_ROOT, TINY_CONFIG
from fake_datasets import WRITERS
from interrupting import BEFORE_THE_RUN, DURING_TEST, Started, during_imports

TINY = str(TINY_CONFIG)


def main_py(*args):
    return [sys.executable, str(REPO_ROOT / "main.py"), *args]


def voc_args(root, *extra):
    return ["test", "--config", str(REPO_ROOT / "configs/voc21.yaml"), "--model", TINY, "--data.init_args.root", str(root), *extra]


def write_photos(folder, n):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(folder / f"p{i:02d}.png")
    return folder


@pytest.mark.subprocess
def test_ctrl_c_while_main_py_starts(tmp_path):
    code, lines = during_imports(main_py("test", "--help"), tmp_path, {**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert (code, lines) == (130, [BEFORE_THE_RUN])


def test_ctrl_c_swallowed_during_the_imports_still_ends_the_command(tmp_path, monkeypatch, capsys):
    """A library may swallow the KeyboardInterrupt of a Ctrl-C while it imports (a bare `except:` around an optional
    import; importlib's weakref callback prints it and goes on): the command still ends as interrupted, and its
    main() never runs. (Seen once in CI: `proxyclip-eval-all --help` exited 0 after Ctrl-C.)"""
    from proxyclip.commands import entry_points

    (tmp_path / "swallowing_command.py").write_text(
        "import os, signal, time\n"
        "try:\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(5)\nexcept BaseException:\n    pass\n"
        "def main():\n    raise AssertionError('main ran after Ctrl-C')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal (pytest's may differ)
    try:
        assert entry_points._run("swallowing_command", "interrupted (Ctrl-C) in the test") == 130
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler                 # put back
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().err == "interrupted (Ctrl-C) in the test\n"


@pytest.mark.subprocess
def test_ctrl_c_while_parsing(tmp_path):
    fifo = tmp_path / "benchmark.yaml"
    os.mkfifo(fifo)                 # reading it blocks until a writer comes: the process is held inside parsing

    def reader_waiting():
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)   # succeeds once the process has opened it to read
        except OSError:
            return None

    started = Started(main_py("test", "--config", str(fifo)), tmp_path)
    writer = started.wait_for(reader_waiting)
    try:
        assert started.ctrl_c() == (130, [BEFORE_THE_RUN])
    finally:
        os.close(writer)


@pytest.mark.subprocess
def test_ctrl_c_while_the_model_is_built(tmp_path):
    """The data are checked (a progress bar), then the model is built: a full-size random ViT-B takes seconds."""
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    started = Started(main_py(*voc_args(root, "--data.init_args.check", "true", "--model.segmentor.vfm_kwargs", "{}",
                                        "--model.output_dir", str(tmp_path / "out"))), tmp_path)
    started.wait_for(lambda: "1/1 [" in started.err.read_text())
    assert started.ctrl_c() == (130, [BEFORE_THE_RUN])
    assert not (tmp_path / "out").exists()


@pytest.mark.subprocess
def test_ctrl_c_during_the_test_loop_keeps_no_results(tmp_path):
    root = WRITERS["voc21"](tmp_path / "data", n=20)
    out = tmp_path / "out"
    started = Started(main_py(*voc_args(root, "--model.output_dir", str(out), "--model.num_panels", "20")), tmp_path)
    started.wait_for(lambda: list(out.glob("panels/000_*.png")))
    assert started.ctrl_c() == (130, [DURING_TEST])
    assert not (out / "metrics.json").exists() and not (out / "panels").exists()


@pytest.mark.subprocess
def test_ctrl_c_during_the_predict_loop_keeps_whole_images(tmp_path):
    photos = write_photos(tmp_path / "photos", 20)
    out = tmp_path / "out"
    started = Started(main_py("predict", "--config", str(REPO_ROOT / "configs/demo.yaml"), "--model", TINY,
                              "--data.init_args.inputs", str(photos), "--prediction_writer.output_dir", str(out)), tmp_path)
    started.wait_for(lambda: list(out.glob("*_legend.json")))
    code, lines = started.ctrl_c()
    kept = sorted(p.name[:-len("_legend.json")] for p in out.glob("*_legend.json"))
    assert code == 130 and lines == [f"interrupted (Ctrl-C) during predict: the outputs of {len(kept)} of 20 images are "
                                     f"kept in {out}/ (each image's files complete); add --overwrite to the same command "
                                     "to redo them"]
    assert 1 <= len(kept) < 20
    assert sorted(p.name[:-len("_labels.png")] for p in out.glob("*_labels.png")) == kept      # nothing half-written
    assert sorted(p.name[:-len("_overlay.png")] for p in out.glob("*_overlay.png")) == kept


@pytest.mark.subprocess
def test_ctrl_c_during_predict_into_a_new_version_folder_says_a_rerun_needs_no_overwrite(tmp_path):
    """Into Lightning's default version_N folder a rerun goes to a new folder: the line does not ask for --overwrite
    (review 22)."""
    photos = write_photos(tmp_path / "photos", 20)
    folder = tmp_path / "outputs" / "demo" / "version_0" / "predictions"
    started = Started(main_py("predict", "--config", str(REPO_ROOT / "configs/demo.yaml"), "--model", TINY,
                              "--data.init_args.inputs", str(photos)), tmp_path)
    started.wait_for(lambda: list(folder.glob("*_legend.json")))
    code, lines = started.ctrl_c()
    kept = len(list(folder.glob("*_legend.json")))
    assert code == 130 and lines == [f"interrupted (Ctrl-C) during predict: the outputs of {kept} of 20 images are kept "
                                     "in outputs/demo/version_0/predictions/ (each image's files complete); the same "
                                     "command again segments every image into a new version folder"]


@pytest.mark.subprocess
def test_ctrl_c_during_a_test_that_replaces_earlier_results_says_they_were_removed(tmp_path):
    """With --overwrite the earlier results go when the run starts: an interrupted rerun says so (review 23)."""
    root = WRITERS["voc21"](tmp_path / "data", n=20)
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    (out / "per_class.csv").write_text("earlier\n")
    started = Started(main_py(*voc_args(root, "--model.output_dir", str(out), "--model.num_panels", "20",
                                        "--overwrite")), tmp_path)
    started.wait_for(lambda: list(out.glob("panels/000_*.png")))
    assert started.ctrl_c() == (130, [f"{DURING_TEST}; the earlier run's results in {out}/ (metrics.json, per_class.csv) "
                                      "were removed when this run started (--overwrite)"])
    assert not (out / "metrics.json").exists() and not (out / "per_class.csv").exists()


@pytest.mark.subprocess
def test_ctrl_c_under_ddp_says_it_once(tmp_path):
    root = WRITERS["voc21"](tmp_path / "data", n=20)
    out = tmp_path / "out"
    started = Started(main_py(*voc_args(root, "--model.output_dir", str(out), "--model.num_panels", "20",
                                        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy",
                                        "ddp")), tmp_path)
    started.wait_for(lambda: list(out.glob("panels/00[01]_*.png")))
    # what each process printed as it started ("Initializing distributed: ...") is not about Ctrl-C
    assert started.ctrl_c(start=started.err.stat().st_size) == (130, [DURING_TEST])
    assert not (out / "metrics.json").exists() and not (out / "panels").exists()    # no rank's panels are left


def test_every_ddp_rank_removes_the_panels_it_wrote(tmp_path, tiny_segmentor):
    """Under DDP each process writes the panels of the images it holds; an interrupted test removes them on every
    rank, each its own (rank 0 alone removed the folder, so a panel another rank wrote after that stayed). This
    process plays rank 1 of 2 with Lightning's own trainer, set up as its launcher sets up a worker; the loop's
    hooks are called as the loop calls them."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.trainer.states import TrainerFn

    from proxyclip.shell.module import ProxyCLIPModule
    from proxyclip.shell.result_writer import ResultWriter

    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False)
    trainer.strategy.cluster_environment.set_global_rank(1)
    trainer.state.fn = TrainerFn.TESTING
    assert not trainer.is_global_zero
    module = ProxyCLIPModule(tiny_segmentor, output_dir=str(tmp_path / "out"), num_panels=8)
    module.trainer = trainer
    module.setup("test")
    writer = ResultWriter()
    writer.on_test_start(trainer, module)
    images = [torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8) for _ in range(2)]
    batch = {"images": images, "labels": [torch.zeros(60, 80, dtype=torch.long)] * 2, "paths": ["a.jpg", "b.jpg"],
             "indices": [1, 3]}                                    # rank 1 of 2 holds the odd positions
    with torch.no_grad():
        writer.on_test_batch_end(trainer, module, module.test_step(batch, 0), batch, 0)
    panels = tmp_path / "out" / "panels"
    assert sorted(p.name for p in panels.iterdir()) == ["001_a.npz", "001_a.png", "003_b.npz", "003_b.png"]
    Image.new("RGB", (4, 4)).save(panels / "000_c.png")             # rank 0's, which rank 0 removes
    writer.on_exception(trainer, module, KeyboardInterrupt())
    assert sorted(p.name for p in panels.iterdir()) == ["000_c.png"]
    trainer.strategy.cluster_environment.set_global_rank(0)        # rank 0 then: nothing of this run is left
    writer.on_exception(trainer, module, KeyboardInterrupt())
    assert not panels.exists()


@pytest.mark.parametrize("moment", ["before the legend is whole", "just after the legend is whole"])
def test_ctrl_c_while_an_image_is_written_keeps_it_whole_or_not_at_all(tmp_path, tiny_segmentor, monkeypatch, moment):
    """The legend is written aside and renamed, so its presence means the image is complete: a Ctrl-C before the
    rename removes the image's files (and the partial legend), one just after it keeps them all. Before, a Ctrl-C
    while the legend was being written removed an image whose legend a reader had already seen."""
    from lightning.pytorch import Trainer

    from proxyclip.shell import prediction_writer
    from proxyclip.shell.module import ProxyCLIPModule

    module = ProxyCLIPModule(tiny_segmentor)
    names = module.segmentor.class_names
    writer = prediction_writer.PredictionWriter(output_dir=str(tmp_path / "out"))
    writer.setup(Trainer(accelerator="cpu", logger=False), module, "predict")
    writer.on_predict_start(None, module)
    real_replace = os.replace

    def interrupted_replace(source, target):
        if moment.startswith("just after"):
            real_replace(source, target)
        raise KeyboardInterrupt

    monkeypatch.setattr(prediction_writer.os, "replace", interrupted_replace)
    item = {"name": "a", "path": "a.png", "pred": torch.zeros(6, 8, dtype=torch.long),
            "probs": torch.full((len(names), 6, 8), 1.0 / len(names))}
    with pytest.raises(KeyboardInterrupt):
        writer.write_on_batch_end(None, module, [item], None, {"originals": [np.zeros((6, 8, 3), np.uint8)]}, 0, 0)
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    kept = ["a_labels.png", "a_legend.json", "a_overlay.png"]
    assert left == ([] if moment.startswith("before") else kept)
    assert writer.complete_outputs(["a"]) == (0 if moment.startswith("before") else 1)
