"""benchmarks/device_check.py, the one command a lent GPU runs, exercised on a CPU with tiny sizes (as CI runs it)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file below `folder`, bytecode caches aside (imports may write them)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.subprocess
def test_device_check_smoke_on_cpu(tmp_path):
    """Without --out a smoke run writes into a new temporary folder, says which, and leaves the checkout as it was."""
    before = snapshot(REPO_ROOT / "benchmarks")
    top = {p.name for p in REPO_ROOT.iterdir()}
    # A short TMPDIR: pytest's folders can be too long for the DataLoader workers' sockets (datamodules/loader.py).
    temp = Path(tempfile.mkdtemp(prefix="pc-dc-"))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(temp)}
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks/device_check.py"), "--device", "cpu", "--smoke"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.split(" ", 1)[0] in ("PASS", "FAIL", "INFO", "SKIP")]
    names = [line.split()[1].rstrip(":") for line in lines]
    assert names == ["environment", "cuda_equals_cpu", "no_host_sync", "cli_counts", "precision", "throughput", "memory",
                     "batch_sweep", "end_to_end", "profile", "methods", "compile"]
    assert not any(line.startswith("FAIL") for line in lines)
    out = Path(re.search(r"^results go to (\S+)/$", result.stdout, re.M).group(1))
    assert out.parent == temp and out.name.startswith("device-check-smoke-")
    assert f"results in {out}/" in result.stdout.splitlines()[-1]
    report = json.loads(next(out.glob("*-smoke.json")).read_text())
    assert report["checks"]["cli_counts"]["status"] == "PASS" and report["checks"]["end_to_end"]["images"] == 12
    assert report["checks"]["no_host_sync"]["summary"].startswith("test's step ran")    # the path `test` runs
    checks = report["checks"]
    # FLOPs counted once per setting; a Cityscapes-like image (21 crops of 224) costs more than a VOC-like one (2 of 336)
    assert 0 < report["flops_per_image"]["voc"] < report["flops_per_image"]["cityscapes"]
    assert checks["throughput"]["flops_per_image"] == report["flops_per_image"]
    assert checks["end_to_end"]["flops_per_image"] == report["flops_per_image"]["voc"]
    assert checks["end_to_end"]["mfu"] is None and "GFLOP/s reached (MFU: no peak known" in checks["end_to_end"]["summary"]
    assert all("mfu" in row and "GFLOP/s reached" in row["mfu_text"] for row in checks["batch_sweep"]["rows"])
    profiled = checks["profile"]
    assert profiled["top"] and all(row["calls"] >= 1 and row["total_ms"] > 0 for row in profiled["top"])
    assert profiled["groups_ms"]["GEMM"] > 0 and profiled["host_aten_ops_per_image"] > 0
    assert profiled["device_busy_share"] is None and (out / profiled["report_file"]).is_file()
    rows = checks["methods"]["presets"]
    assert list(rows) == ["default.yaml", "sclip_vitb16.yaml"] and rows["default.yaml"]["speed_ratio"] == 1.0
    assert all(row["images_per_s"] > 0 and row["peak_memory_bytes"] > 0 for row in rows.values())
    assert [row["method"] for row in rows.values()] == ["proxyclip", "sclip"]
    assert (out / checks["methods"]["report_file"]).is_file()
    assert (out / next(out.glob("*-smoke.json")).name.replace(".json", ".md")).is_file()
    assert snapshot(REPO_ROOT / "benchmarks") == before
    assert {p.name for p in REPO_ROOT.iterdir()} - top <= {".pytest_cache", "__pycache__"}
    shutil.rmtree(temp)


@pytest.mark.subprocess
def test_device_check_out_is_where_results_go(tmp_path):
    """`--out DIR` is honoured (a zero budget skips every check, and each skip is written at once); `--only` runs
    the checks named (and the environment), into files named apart."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks/device_check.py"), "--device", "cpu", "--smoke",
                             "--out", str(tmp_path / "mine"), "--budget-s", "0", "--only", "methods", "profile"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"results go to {tmp_path / 'mine'}/" in result.stdout
    (written,) = (tmp_path / "mine").glob("*.json")
    assert written.name.endswith("-smoke-methods-profile.json")
    assert list(json.loads(written.read_text())["checks"]) == ["environment", "profile", "methods"]
