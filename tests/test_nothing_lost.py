"""No run silently replaces an earlier one's results (item 9), and `predict` segments every good input when some
cannot be read, lists the bad ones together and exits non-zero (item 10)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, TINY_CONFIG
from fake_datasets import WRITERS

TINY = str(TINY_CONFIG)
NO_MODEL = ("--model.segmentor.clip_pretrained", "/nonexistent/missing.bin", "--model.segmentor.clip_quick_gelu", "true")


def voc_args(root, *extra):
    return ["test", "--config", str(REPO_ROOT / "configs/voc21.yaml"), "--model", TINY, "--data.init_args.root", str(root),
            "--model.num_panels", "1", *extra]


def predict_args(inputs, *extra):
    return ["predict", "--config", str(REPO_ROOT / "configs/demo.yaml"), "--model", TINY, "--data.init_args.inputs",
            json.dumps([str(p) for p in inputs]), *extra]


def run(args, capsys):
    """(exit code, stdout, stderr) of cli_main in this process."""
    from proxyclip.commands.cli import cli_main

    try:
        cli_main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def write_images(folder, good=(), bad=(), truncated=()):
    """Good random PNG/JPEG images, files that are no image, JPEGs cut short; returns every path, sorted."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in (*good, *truncated):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / name)
    for name in truncated:
        (folder / name).write_bytes((folder / name).read_bytes()[:-120])
    for name in bad:
        (folder / name).write_bytes(b"not an image")
    return sorted(folder / name for name in (*good, *bad, *truncated))


def one_error(err):
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return err[err.index("error:"):]


# --- item 9: test --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["output_dir", "default_root"])
def test_a_second_test_into_the_same_folder_is_refused_unless_overwrite(where, tmp_path, capsys):
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    out = tmp_path / "out"
    folder_args = (["--model.output_dir", str(out)] if where == "output_dir"
                   else ["--trainer.logger", "false", "--trainer.default_root_dir", str(out)])
    code, _, err = run(voc_args(root, *folder_args), capsys)
    assert code == 0, err
    (out / "panels" / "099_of_an_earlier_run.png").write_bytes(b"x")       # a file the next run would not write
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    code, _, err = run(voc_args(root, *folder_args, *NO_MODEL), capsys)
    error = one_error(err)
    assert code == 2 and error.startswith(f"error: The output folder {out} already holds the results of an earlier run "
                                          "(metrics.json, per_class.csv, summary.md, per_class_iou.png, panels/)")
    assert "--overwrite" in error and "missing.bin" not in error            # refused before the model is built
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == first

    code, _, err = run(voc_args(root, *folder_args, "--overwrite"), capsys)
    assert code == 0, err
    assert (out / "metrics.json").stat().st_mtime_ns > first["metrics.json"]
    assert sorted(p.name for p in (out / "panels").iterdir()) == ["000_2007_000000.npz", "000_2007_000000.png"]   # never two runs mixed


def test_default_version_folders_need_no_overwrite(tmp_path, capsys, monkeypatch):
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        code, _, err = run(voc_args(root), capsys)
        assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "outputs" / "lightning_logs").iterdir()) == ["version_0", "version_1"]


# --- item 9: predict -----------------------------------------------------------------------------------------------
def test_predict_into_a_folder_with_outputs_of_the_same_names_is_refused_unless_overwrite(tmp_path, capsys):
    inputs = write_images(tmp_path / "photos", good=("a.png", "b.png"))
    out = tmp_path / "out"
    code, _, err = run(predict_args(inputs, "--prediction_writer.output_dir", str(out),
                                    "--prediction_writer.save_probabilities", "true"), capsys)
    assert code == 0, err
    first = {p.name: p.stat().st_mtime_ns for p in out.glob("*_*")}

    code, _, err = run(predict_args(inputs[:1], "--prediction_writer.output_dir", str(out), *NO_MODEL), capsys)
    error = one_error(err)
    assert code == 2 and error.startswith(f"error: The output folder {out} already holds outputs of an earlier run for "
                                          "these inputs (a_labels.png, a_overlay.png, a_probs.npz, a_legend.json)")
    assert "--overwrite" in error and "missing.bin" not in error
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_*")} == first

    other = write_images(tmp_path / "more", good=("c.png",))                  # other names: nothing is replaced
    code, _, err = run(predict_args(other, "--prediction_writer.output_dir", str(out)), capsys)
    assert code == 0, err

    code, _, err = run(predict_args(inputs[:1], "--prediction_writer.output_dir", str(out), "--overwrite"), capsys)
    assert code == 0, err
    assert (out / "a_labels.png").stat().st_mtime_ns > first["a_labels.png"]
    assert not (out / "a_probs.npz").exists()                                 # no earlier file beside the new ones
    assert all((out / name).stat().st_mtime_ns == first[name] for name in first if name.startswith("b_"))


# --- item 10: every good input, every bad one listed ---------------------------------------------------------------
def test_predict_segments_every_good_input_and_lists_every_bad_one(tmp_path, capsys):
    inputs = write_images(tmp_path / "photos", good=("a.png", "c.png", "e.jpg"), bad=("b.png",), truncated=("d.jpg",))
    out = tmp_path / "out"
    code, stdout, err = run(predict_args(inputs, "--prediction_writer.output_dir", str(out)), capsys)
    assert code == 1
    assert sorted(p.name for p in out.glob("*_labels.png")) == ["a_labels.png", "c_labels.png", "e_labels.png"]
    assert f"Segmented 3 images: files in {out}/" in stdout
    error = one_error(err)
    assert error.startswith(f"error: 2 of the 5 inputs could not be read and were skipped (all of them are listed in "
                            f"{out / 'skipped.json'})")
    assert f"{tmp_path / 'photos' / 'b.png'} cannot be decoded" in error and f"{tmp_path / 'photos' / 'd.jpg'} is a truncated JPEG" in error
    skipped = json.loads((out / "skipped.json").read_text())
    assert [item["path"] for item in skipped] == [str(tmp_path / "photos" / n) for n in ("b.png", "d.jpg")]
    assert all(item["path"] in item["reason"] for item in skipped)


def test_predict_check_reports_every_bad_input_before_the_model_is_built(tmp_path, capsys):
    inputs = write_images(tmp_path / "photos", good=("a.png",), bad=("b.png",), truncated=("d.jpg",))
    code, _, err = run(predict_args(inputs, "--data.init_args.check", "true", "--prediction_writer.output_dir",
                                    str(tmp_path / "out"), *NO_MODEL), capsys)
    error = one_error(err)
    assert code == 2 and error.startswith("error: 2 of the 3 input images cannot be read:")
    assert "b.png cannot be decoded" in error and "d.jpg is a truncated JPEG" in error and "missing.bin" not in error
    assert not (tmp_path / "out").exists()


@pytest.mark.subprocess
def test_ddp_predict_lists_the_bad_inputs_of_every_process_once(tmp_path):
    """2 processes: each holds one bad input (a sampler deals them out in turn); one list, one file, exit code 1."""
    inputs = write_images(tmp_path / "photos", good=("c.png", "d.png"), bad=("a.png", "b.png"))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, str(REPO_ROOT / "main.py"), *predict_args(inputs, "--prediction_writer.output_dir",
                             str(out), "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*_labels.png")) == ["c_labels.png", "d_labels.png"]
    error = one_error(result.stderr)
    assert error.startswith("error: 2 of the 4 inputs could not be read") and "a.png" in error and "b.png" in error
    assert [item["path"] for item in json.loads((out / "skipped.json").read_text())] == [str(inputs[0]), str(inputs[1])]
