"""benchmarks/device_check.py, the one command a lent GPU runs, exercised on a CPU with tiny sizes (as CI runs it)."""
import json
import os
import subprocess
import sys

from conftest import REPO_ROOT


def test_device_check_smoke_on_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks/device_check.py"), "--device", "cpu", "--smoke",
                             "--out", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.split(" ", 1)[0] in ("PASS", "FAIL", "INFO", "SKIP")]
    names = [line.split()[1].rstrip(":") for line in lines]
    assert names == ["environment", "cuda_equals_cpu", "no_host_sync", "cli_counts", "precision", "throughput", "memory",
                     "batch_sweep", "end_to_end", "compile"]
    assert not any(line.startswith("FAIL") for line in lines)
    report = json.loads(next(tmp_path.glob("*-smoke.json")).read_text())
    assert report["checks"]["cli_counts"]["status"] == "PASS" and report["checks"]["end_to_end"]["images"] == 12
    assert (tmp_path / next(tmp_path.glob("*-smoke.json")).name.replace(".json", ".md")).is_file()
