"""What a run asks of the machine and of its folders is checked before any weights are loaded, and what ran is
recorded: precision (float16 AMP on a CPU refused, bf16 on a CPU that emulates it said), a missing accelerator, an
output folder that cannot be written, and `--trainer.default_root_dir` moving the logs and results."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from lightning.pytorch.accelerators import AcceleratorRegistry
from PIL import Image

from conftest import REPO_ROOT, TINY_CONFIG
from fake_datasets import WRITERS

TINY = str(TINY_CONFIG)
ANY_GPU = any(AcceleratorRegistry[name]["accelerator"].is_available() for name in ("cuda", "mps"))


def voc_args(root, *extra):
    return ["test", "--config", str(REPO_ROOT / "configs/voc21.yaml"), "--model", TINY, "--data.init_args.root", str(root), *extra]


def refused(args, capsys):
    """The one paragraph of a run refused by cli_main (exit code 2)."""
    from proxyclip.commands.cli import cli_main

    with pytest.raises(SystemExit) as info:
        cli_main(args)
    out, err = capsys.readouterr()
    assert info.value.code == 2, out[-2000:] + err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# a checkpoint that does not exist: the model cannot be built, so an error about anything else came first
NO_MODEL = ("--model.segmentor.clip_pretrained", "/nonexistent/missing.bin", "--model.segmentor.clip_quick_gelu", "true")


# --- item 4: float16 autocast on a CPU would silently run bfloat16 ---------------------------------------------------
@pytest.mark.parametrize("precision", ["16-mixed", "16"])
def test_float16_amp_on_a_cpu_is_refused_before_the_model_is_built(precision, tmp_path, capsys):
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    error = refused(voc_args(root, "--trainer.accelerator", "cpu", "--trainer.precision", precision,
                             "--model.output_dir", str(tmp_path / "out"), *NO_MODEL), capsys)
    assert error.startswith(f"error: --trainer.precision {precision} on a CPU: Lightning")
    assert "bf16-mixed" in error and "missing.bin" not in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("precision, ran, autocast", [("bf16-mixed", "bf16-mixed", "bfloat16"), ("32", "32-true", None)])
def test_metrics_json_records_the_precision_that_ran(precision, ran, autocast, tmp_path):
    from proxyclip.commands.cli import cli_main

    root = WRITERS["voc21"](tmp_path / "data", n=1)
    cli_main(voc_args(root, "--trainer.accelerator", "cpu", "--trainer.precision", precision, "--model.output_dir",
                      str(tmp_path / "out"), "--trainer.logger", "false", "--model.num_panels", "0"))
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    from proxyclip.method.onednn_linear import cpu_bf16, onednn_choice

    onednn, why = onednn_choice()      # the tiny preset leaves onednn_linear at "auto": this CPU's choice, and why
    assert report["precision"] == {"precision": ran, "autocast_dtype": autocast, "device": "cpu", "cpu_fp32_linear": {
        "set": "auto", "kernel": "oneDNN" if onednn else "PyTorch's own", "why": why}, "cpu_bf16": cpu_bf16()}


# --- item 8: bf16 on a CPU without bf16 instructions is emulated, slower than fp32: said before the run ----------
AVX2_ONLY = ("AuthenticAMD", frozenset({"sse4_2", "avx", "avx2", "fma"}))
BF16_NATIVE = ("AuthenticAMD", frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512_bf16"}))
ADVICE = "note: --trainer.precision bf16-mixed on this CPU: it has no AVX512_BF16 or AMX_BF16 instructions"


def this_cpu_is(cpu, monkeypatch):
    """The CPU's vendor and flags, as /proc/cpuinfo gives them (a hardware fact, not this package's logic)."""
    from proxyclip.method import onednn_linear

    onednn_linear.onednn_choice()      # the fp32 linear path, decided once per process: this machine's, kept so
    monkeypatch.setattr(onednn_linear, "cpu_vendor_and_flags", lambda: cpu)
    monkeypatch.setattr(onednn_linear.platform, "machine", lambda: "x86_64")


@pytest.mark.parametrize("cpu, precision, advised", [(AVX2_ONLY, "bf16-mixed", True), (BF16_NATIVE, "bf16-mixed", False),
                                                     (AVX2_ONLY, "32", False)])
def test_emulated_bf16_is_said_once_before_the_run_and_recorded(cpu, precision, advised, tmp_path, monkeypatch, capsys):
    from proxyclip.commands.cli import cli_main

    this_cpu_is(cpu, monkeypatch)
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    cli_main(voc_args(root, "--trainer.accelerator", "cpu", "--trainer.precision", precision, "--model.output_dir",
                      str(tmp_path / "out"), "--trainer.logger", "false", "--model.num_panels", "0"))
    err = capsys.readouterr().err
    assert [line.startswith(ADVICE) for line in err.splitlines()].count(True) == (1 if advised else 0), err
    assert ("note: --trainer.precision" in err) == advised                    # no other wording of it either
    recorded = json.loads((tmp_path / "out" / "metrics.json").read_text())["precision"]["cpu_bf16"]
    assert recorded == ({"native": False, "why": "emulated: the CPU has no AVX512_BF16 or AMX_BF16 instructions"}
                        if cpu is AVX2_ONLY else {"native": True, "why": "native: the CPU has AVX512_BF16"})


def test_emulated_bf16_is_said_before_the_model_is_built(tmp_path, monkeypatch, capsys):
    """The note comes first; the missing checkpoint, found while building the model, after it: advice, not a refusal."""
    from proxyclip.commands.cli import cli_main

    this_cpu_is(AVX2_ONLY, monkeypatch)
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    with pytest.raises(SystemExit):
        cli_main(voc_args(root, "--trainer.accelerator", "cpu", "--trainer.precision", "bf16-mixed", *NO_MODEL))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(ADVICE) and "fp32 is faster here" in lines[0], lines
    assert lines[1].startswith("error: ") and "missing.bin" in lines[1]


def test_the_bf16_note_follows_the_precision_and_the_accelerator(monkeypatch):
    from proxyclip.commands.hardware import bf16_advice
    from proxyclip.method.onednn_linear import bf16_support

    this_cpu_is(AVX2_ONLY, monkeypatch)
    for precision in ("bf16", "bf16-mixed", "bf16-true"):
        assert bf16_advice(precision, "cpu").startswith(f"note: --trainer.precision {precision} on this CPU: ")
    assert bf16_advice("bf16-mixed", "gpu") is None and bf16_advice("32-true", "cpu") is None
    this_cpu_is(("GenuineIntel", frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"})), monkeypatch)
    assert bf16_advice("bf16-mixed", "cpu") is None
    assert bf16_support("x86_64", frozenset({"amx_bf16"})) == (True, "native: the CPU has AMX_BF16")
    assert bf16_support("x86_64", None)[0] is None and bf16_support("aarch64", frozenset())[0] is None   # no note


# --- item 5: --trainer.default_root_dir holds the logs and the results --------------------------------------------
def test_default_root_dir_holds_the_logs_and_the_results(tmp_path, monkeypatch):
    from proxyclip.commands.cli import cli_main

    root = WRITERS["voc21"](tmp_path / "data", n=1)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "image.png")
    cwd, chosen = tmp_path / "cwd", tmp_path / "chosen"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    cli_main(voc_args(root, "--trainer.default_root_dir", str(chosen), "--model.num_panels", "1"))
    run = chosen / "lightning_logs" / "version_0"
    assert {"config.yaml", "metrics.json", "per_class.csv", "summary.md", "per_class_iou.png", "panels"} <= {p.name for p in run.iterdir()}
    cli_main(["predict", "--config", str(REPO_ROOT / "configs/demo.yaml"), "--model", TINY, "--data.init_args.inputs",
              str(tmp_path / "image.png"), "--trainer.default_root_dir", str(chosen)])
    assert (chosen / "demo" / "version_0" / "predictions" / "image_labels.png").is_file()
    assert list(cwd.iterdir()) == []                                           # nothing in ./outputs


# --- item 13: an accelerator that is not there, a folder that cannot be written -----------------------------------
@pytest.mark.skipif(ANY_GPU, reason="this machine has a GPU")
@pytest.mark.parametrize("accelerator", ["gpu", "cuda", "mps"])
def test_a_missing_accelerator_is_refused_before_any_weights_are_loaded(accelerator, tmp_path, capsys):
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    error = refused(voc_args(root, "--trainer.accelerator", accelerator, "--model.output_dir", str(tmp_path / "out"),
                             *NO_MODEL), capsys)
    assert error.startswith(f"error: --trainer.accelerator {accelerator}: this machine has no GPU")
    assert "--trainer.accelerator cpu" in error and "missing.bin" not in error
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="no sysfs")
def test_a_folder_that_cannot_be_written_is_refused_before_any_weights_are_loaded(tmp_path, capsys):
    """/sys refuses new files even to root, whose permission checks (os.access) all say yes."""
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    before = sorted(os.listdir("/sys"))
    target = Path("/sys/proxyclip-test/results")
    error = refused(voc_args(root, "--model.output_dir", str(target), *NO_MODEL), capsys)
    assert error.startswith(f"error: The output folder {target} (--model.output_dir) cannot be used: ")
    assert "/sys" in error and "missing.bin" not in error
    assert sorted(os.listdir("/sys")) == before


def test_the_write_probe_leaves_nothing_behind(tmp_path):
    from proxyclip.commands.outputs import unusable_folder

    (tmp_path / "kept").write_text("x")
    assert unusable_folder(tmp_path / "new" / "deeper") is None
    assert unusable_folder(tmp_path) is None
    assert [p.name for p in tmp_path.iterdir()] == ["kept"]                     # not even the folder asked for


@pytest.mark.subprocess
@pytest.mark.parametrize("workers", [["--data.init_args.num_workers", "2"], ["--trainer.accelerator", "gpu"]])
def test_a_temporary_folder_too_long_for_worker_sockets_is_refused_before_any_weights_are_loaded(tmp_path, workers):
    """Workers (asked for, or the loader's choice on a GPU) with a TMPDIR their sockets cannot live in would hang:
    refused first, in one paragraph."""
    if workers[-1] == "gpu" and not ANY_GPU:
        pytest.skip("the loader chooses workers on a GPU")
    root = WRITERS["voc21"](tmp_path / "data", n=1)
    temp = Path(tempfile.mkdtemp(prefix="pc-")) / ("t" * 90)
    temp.mkdir()
    try:
        result = subprocess.run([sys.executable, str(REPO_ROOT / "main.py"), *voc_args(root, *workers, *NO_MODEL)],
                                cwd=tmp_path, env={**os.environ, "TMPDIR": str(temp)}, capture_output=True, text=True,
                                timeout=600)
    finally:
        shutil.rmtree(temp.parent)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"error: The temporary folder {temp} ") and "TMPDIR" in lines[0]
    assert "missing.bin" not in lines[0]
