"""Items 9-11 through the installed console scripts, from a folder outside the checkout: Ctrl-C while each command
starts, `predict` with an unreadable input, the same run again (refused), and Ctrl-C in the predict loop."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from interrupting import BEFORE_THE_RUN, Started, during_imports


@pytest.mark.subprocess
def test_installed_commands_keep_what_they_should(installed, tmp_path):
    bin_dir, cwd, env = installed
    assert not (cwd / "outputs").exists()

    def command(name, *args):
        return [str(bin_dir / name), *args]

    # Ctrl-C while torch and Lightning load, in each command
    shipped = Path(subprocess.run(command("python", "-c", "from proxyclip.shipped_configs import packaged_configs as p; "
                                          "print(p())"), cwd=cwd, env=env, capture_output=True, text=True).stdout.strip())
    for name, args, line in [
        ("proxyclip", ["test", "--help"], BEFORE_THE_RUN),
        ("proxyclip-eval-all", ["--help"], "[eval_all] interrupted; run the same command again to resume (finished "
                                           "benchmarks are kept and skipped)"),
        ("proxyclip-weights", ["list", str(shipped / "model/tiny_random.yaml")],
         "interrupted (Ctrl-C): weights downloaded completely stay in their cache; run the same command again for the rest"),
        ("proxyclip-masks", ["--images", str(tmp_path), "--output", str(tmp_path / "masks")],
         "interrupted (Ctrl-C): the masks written so far are kept; run the same command again for the rest"),
    ]:
        (tmp_path / name).mkdir()
        assert during_imports(command(name, *args), tmp_path / name, env, cwd=cwd) == (130, [line]), name

    # predict: every good input segmented, the unreadable one listed and in skipped.json, exit code 1
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(photos / f"p{i:02d}.png")
    (photos / "broken.png").write_bytes(b"not an image")
    predict = command("proxyclip", "predict", "--config", str(shipped / "demo.yaml"), "--model",
                      str(shipped / "model/tiny_random.yaml"), "--data.init_args.inputs", str(photos),
                      "--data.init_args.vocabulary", "sky, grass", "--prediction_writer.output_dir", str(out))
    first = subprocess.run(predict, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 1, first.stderr[-3000:]
    assert len(list(out.glob("*_legend.json"))) == 12
    assert [item["path"] for item in json.loads((out / "skipped.json").read_text())] == [str(photos / "broken.png")]
    assert "error: 1 of the 13 inputs could not be read and were skipped" in first.stderr

    # the same run again: refused before any work, the earlier outputs untouched
    again = subprocess.run(predict, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert json.loads((out / "skipped.json").read_text())[0]["path"] == str(photos / "broken.png")

    # with --overwrite, interrupted in the loop: one line, the complete outputs of the images done so far
    (tmp_path / "loop").mkdir()
    started = Started([*predict, "--overwrite"], tmp_path / "loop", env=env, cwd=cwd)
    # the earlier files go first (skipped.json last of them), then this run's legends appear
    started.wait_for(lambda: not (out / "skipped.json").exists() and list(out.glob("*_legend.json")))
    code, lines = started.ctrl_c()
    kept = len(list(out.glob("*_legend.json")))
    assert code == 130 and len(lines) == 1, lines
    assert lines[0].startswith(f"interrupted (Ctrl-C) during predict: the outputs of {kept} of 13 images are kept in "
                               f"{out}/ (each image's files complete); the earlier run's outputs for these inputs in "
                               f"{out}/ (p00_labels.png, ")
    assert lines[0].endswith(" were removed when this run started (--overwrite); add --overwrite to the same command to "
                             "redo them")
    assert 1 <= kept < 12 and not (out / "skipped.json").exists()
    assert not (cwd / "outputs").exists()                                     # nothing went elsewhere
