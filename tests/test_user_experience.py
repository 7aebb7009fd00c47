"""What a new user meets: no lost outputs, errors before work, clean interrupts, quiet runs, readable pictures."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, TINY_CONFIG
from fake_datasets import WRITERS

TINY = str(TINY_CONFIG)


def run_main(*args, cwd, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, str(REPO_ROOT / "main.py"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def voc_test_args(root, *extra):
    return ["test", "--config", str(REPO_ROOT / "configs/voc21.yaml"), "--model", TINY, "--data.init_args.root", str(root), *extra]


# --- 1. predict keeps every output apart --------------------------------------------------------------------------
@pytest.mark.subprocess
def test_predict_outputs_of_same_stem_inputs_stay_apart(tmp_path):
    rng = np.random.default_rng(0)
    inputs = ["photos/rgb.jpg", "photos/rgb.png", "a/x.jpg", "b/x.jpg", "photos/solo.jpg"]
    for name in inputs:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(tmp_path / name)
    out = tmp_path / "out"
    result = run_main("predict", "--config", str(REPO_ROOT / "configs/demo.yaml"), "--model", TINY,
                      "--data.init_args.inputs", json.dumps([str(tmp_path / p) for p in ("photos", "a", "b")]),
                      "--prediction_writer.output_dir", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    labels = sorted(p.name for p in out.glob("*_labels.png"))
    assert labels == ["a__x_labels.png", "b__x_labels.png", "rgb_jpg_labels.png", "rgb_png_labels.png", "solo_labels.png"]
    images = {json.loads((out / f"{n[:-len('_labels.png')]}_legend.json").read_text())["image"] for n in labels}
    assert images == {str(tmp_path / p) for p in inputs}                      # each input wrote its own files
    assert f"Segmented 5 images: files in {out}/" in result.stdout


# --- 2. and 6. where outputs go: checked before anything is built, and nothing elsewhere -----------------------------
@pytest.mark.subprocess
def test_an_unusable_output_folder_is_refused_before_the_model_is_built(tmp_path):
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    (tmp_path / "a_file").write_text("not a folder")
    # the model could not be built either (its checkpoint is missing): the output error must come first
    result = run_main(*voc_test_args(root, "--model.output_dir", str(tmp_path / "a_file" / "results"),
                                     "--model.segmentor.clip_pretrained", str(tmp_path / "missing.bin"),
                                     "--model.segmentor.clip_quick_gelu", "true"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: The output folder {tmp_path / 'a_file' / 'results'} (--model.output_dir) cannot be used: "
        f"{tmp_path / 'a_file'} is a file, not a folder, so {tmp_path / 'a_file' / 'results'} cannot be created below it. "
        "Choose a folder that can be created and written, e.g. --model.output_dir results/run1."]
    predicted = run_main("predict", "--config", str(REPO_ROOT / "configs/demo.yaml"), "--model", TINY,
                         "--prediction_writer.output_dir", str(tmp_path / "a_file" / "p"), cwd=tmp_path)
    assert predicted.returncode == 2 and "--prediction_writer.output_dir" in predicted.stderr
    assert "Traceback" not in predicted.stderr


@pytest.mark.subprocess
def test_with_an_output_dir_nothing_is_written_elsewhere(tmp_path):
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = run_main(*voc_test_args(root, "--model.output_dir", str(tmp_path / "results")), cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(cwd.iterdir()) == []
    assert (tmp_path / "results" / "metrics.json").is_file()
    assert (tmp_path / "results" / "lightning_logs" / "version_0" / "config.yaml").is_file()


# --- 3. every bad file at once, before the model ------------------------------------------------------------------
@pytest.mark.subprocess
def test_check_reports_every_bad_file_before_the_model_is_built(tmp_path):
    root = WRITERS["voc21"](tmp_path / "data", n=6)
    jpeg = root / "JPEGImages" / "2007_000001.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:-200])                                   # truncated
    label_path = root / "SegmentationClass" / "2007_000004.png"
    label = np.array(Image.open(label_path))
    label[0, 0] = 77                                                             # out of range
    Image.fromarray(label.astype(np.uint8)).save(label_path)
    result = run_main(*voc_test_args(root, "--data.init_args.check", "true", "--model.output_dir", str(tmp_path / "out"),
                                     "--model.segmentor.clip_pretrained", str(tmp_path / "missing.bin"),
                                     "--model.segmentor.clip_quick_gelu", "true"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = result.stderr[result.stderr.index("error:"):]
    assert "2 of the 6 voc21 samples" in error and "2007_000001.jpg is a truncated JPEG" in error
    assert "2007_000004.png has values 77" in error and "missing.bin" not in error   # the model was never built
    assert not (tmp_path / "out").exists()


# --- 7. Ctrl-C during evaluate-all ----------------------------------------------------------------------------------
@pytest.mark.subprocess
def test_ctrl_c_during_evaluate_all_stops_cleanly_and_resumes(tmp_path):
    WRITERS["voc21"](tmp_path / "data", n=6)
    cmd = [sys.executable, "-m", "proxyclip.eval_all", "--model", TINY, "--datasets", "voc21", "--data-root",
           str(tmp_path / "data"), "--output", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,                              # its own group, as a terminal's job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))   # even from a background job
    for line in proc.stdout:
        if line.startswith("[eval_all] voc21:"):                                 # the benchmark's process has started
            break
    time.sleep(0.5)                                      # the child is still importing torch: never too late
    os.killpg(proc.pid, signal.SIGINT)                   # Ctrl-C reaches the whole group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err + out and "KeyboardInterrupt" not in err + out
    assert err.strip().splitlines()[-1] == ("[eval_all] interrupted at voc21; run the same command again to resume "
                                             "(finished benchmarks are kept and skipped)")
    assert not (tmp_path / "out" / "tiny_random" / "voc21" / "metrics.json").exists()
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "tiny_random / voc21: ok" in again.stdout


# --- 8. configuration mistakes: one paragraph, usage only on --help --------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["test", "--config", "/nonexistent/bench.yaml"], "error: The config file /nonexistent/bench.yaml does not exist"),
    (["test", "--config", str(REPO_ROOT / "configs/voc21.yaml"), "--model", "/nonexistent/model.yaml"],
     "error: --model /nonexistent/model.yaml does not exist. The shipped ones are in configs/model/"),
    (["test", "--config", str(REPO_ROOT / "configs/voc21.yaml"), "--model.segmentor.bata", "1.0"],
     "error: --model.segmentor.bata is not an option of TrainingFreeSegmentor. Did you mean `beta` (a method's own "
     "option, given as --model.segmentor.method_kwargs '{NAME: VALUE}')?"),
    (["test", "--config", str(REPO_ROOT / "configs/voc21.yaml"), "--model.segmentor.strid", "100"],
     "error: --model.segmentor.strid is not an option of TrainingFreeSegmentor. Did you mean `stride`"),
    (["test", "--config", str(REPO_ROOT / "configs/voc21.yaml"), "--model.segmentor.beta", "1.0"],
     "error: beta is an option of the proxyclip, trident and corrclip methods, not of the segmentor: a method's own options are given as "
     "method_kwargs, on the command line --model.segmentor.method_kwargs '{beta: 1.2, gamma: 3.0}'"),
    (["test", "--config", str(REPO_ROOT / "configs/voc21.yaml"), "--trainer.devcies", "2"],
     "error: --trainer.devcies is not an option. Did you mean `--trainer.devices`"),
])
def test_config_mistakes_are_one_paragraph(args, expected, capsys):
    from proxyclip.commands.cli import cli_main

    with pytest.raises(SystemExit) as info:
        cli_main(args)
    out, err = capsys.readouterr()
    assert info.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), err
    assert "usage:" not in err + out


def test_help_ends_with_the_options_most_runs_need(capsys):
    from proxyclip.commands.cli import cli_main

    with pytest.raises(SystemExit) as info:
        cli_main(["test", "--help"])
    assert info.value.code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("The options most runs need"))
    assert len(lines) - start <= 16                                             # the help's last lines
    for needed in ("--data.init_args.root DIR", "--protocol original|common", "--model.segmentor.method_kwargs '{...}'"):
        assert any(line.strip().startswith(needed) for line in lines[start:]), needed


def test_the_readme_lists_the_options_most_runs_need_as_the_help_does():
    """The table at the top of README.md and the end of `--help` (cli._MOST_USED) name the same options, in order."""
    from proxyclip.commands.cli import _MOST_USED

    readme = (REPO_ROOT / "README.md").read_text().split("The options most runs need", 1)[1].split("\n\n")[1]
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1].replace("\\|", "|") for row in rows] == [option for option, _ in _MOST_USED]


# --- 9. a refused DDP start says so once ---------------------------------------------------------------------------
@pytest.mark.subprocess
def test_refused_ddp_start_prints_its_error_once(tmp_path):
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    result = run_main(*voc_test_args(root, "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy",
                                     "ddp", "--model.output_dir", str(tmp_path / "out")), cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.count("error:") == 1 and "fewer than the 2 processes" in result.stderr


# --- 10. quiet by default, everything with --all_messages --------------------------------------------------------------
@pytest.mark.subprocess
def test_runs_are_quiet_unless_asked(tmp_path):
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    quiet = run_main(*voc_test_args(root, "--model.output_dir", str(tmp_path / "q")), cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    text = quiet.stdout + quiet.stderr
    for noise in ("Seed set to", "No seed found", "Tip:", "GPU available", "LeafSpec", "deprecated"):
        assert noise not in text, noise
    assert "mIoU" in text and "Results written to" in text
    loud = run_main(*voc_test_args(root, "--model.output_dir", str(tmp_path / "l"), "--all_messages"), cwd=tmp_path)
    assert loud.returncode == 0 and "Seed set to" in loud.stdout + loud.stderr


# --- 11-13. pictures a person reads ----------------------------------------------------------------------------------
def test_benchmark_palettes():
    from proxyclip.shell.visualize import CITYSCAPES, palette, voc_colormap

    assert palette(19, "cityscapes")[0].tolist() == [128, 64, 128] and palette(19, "cityscapes").tolist() == [list(c) for c in CITYSCAPES]
    assert palette(21, "voc21")[15].tolist() == [192, 128, 128]                  # VOC's person
    assert palette(20, "voc20")[14].tolist() == [192, 128, 128]                  # the same person, one index down
    assert palette(60, "context60").tolist() == voc_colormap(60).tolist()
    assert palette(150, "ade20k")[:21].tolist() == voc_colormap(21).tolist()      # the fixed default elsewhere
    assert len({tuple(c) for c in palette(847, "ade847")}) > 800


def test_panel_structure_titles_and_ignored_in_the_legend():
    from proxyclip.shell.visualize import IGNORED, comparison_panel, palette

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)                  # a tiny image is enlarged to be read
    label, pred = rng.integers(0, 3, (37, 53)), rng.integers(0, 3, (37, 53))
    label[:4] = 255
    names = ["background", "cat", "dog"]
    panel = comparison_panel(image, label, pred, names, 255, palette(3, "voc21"))
    scale = 5                                                                   # 37 px -> at least 160
    assert panel.shape[0] == 37 * scale + 18                                    # a title strip above the tiles
    tile = panel[18:, :53 * scale]
    assert np.array_equal(tile[::scale, ::scale], image)
    gt = panel[18:, 53 * scale + 4: 2 * 53 * scale + 4]
    assert (gt[:4 * scale] == IGNORED).all()                                    # ignored pixels white ...
    legend = panel[:, 3 * 53 * scale + 12:]
    swatch_rows = [(legend[4 + 14 * i + 3, 4 + 7] == IGNORED).all() for i in range(4)]
    assert swatch_rows == [False, False, False, True]                           # ... and named last in the legend
    assert (panel[:18] < 128).any()                                             # the titles are drawn


def test_iou_chart_stays_readable_for_847_classes():
    from proxyclip.shell.visualize import iou_bar_chart

    rng = np.random.default_rng(0)
    small = iou_bar_chart([f"c{i}" for i in range(21)], list(rng.random(21) * 100))
    large = iou_bar_chart([f"c{i}" for i in range(847)], [float(v) if i % 5 else None for i, v in enumerate(rng.random(847) * 100)])
    larger = iou_bar_chart([f"c{i}" for i in range(459)], list(rng.random(459) * 100))
    assert large.shape[0] == larger.shape[0] < 1100                             # the best and worst 30, not 847 rows
    assert small.shape[0] == 40 + 14 * 21 + 36


def test_overlay_of_a_10x10_image_is_readable():
    from proxyclip.shell.visualize import overlay_with_legend, palette

    image = np.zeros((10, 10, 3), np.uint8)
    labels = np.arange(100).reshape(10, 10) % 3
    picture = overlay_with_legend(image, labels, ["wall / floor", "sky", "horse"], palette(3))
    assert picture.shape[0] >= 160 and picture.shape[1] > 160 + 60           # enlarged, with a legend beside it
