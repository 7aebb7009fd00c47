"""The methods of steps 11-12 (ResCLIP, SC-CLIP, CASS; Trident, CorrCLIP) beside the others: eval_all puts them in one
table, each run with its own protocol file, and `proxyclip-weights list` names each preset's sources (CASS's DINO
ViT-B/8, Trident's DINO ViT-B/16 and SAM, CorrCLIP's MetaCLIP and DINO ViT-B/8 included)."""
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO_ROOT, TINY_CONFIG
from fake_datasets import write_voc
from test_weights import run_weights

NEW = ("resclip", "scclip", "cass")


def tiny_preset(method):
    """The method's shipped tiny random preset (configs/model/tiny_<method>.yaml)."""
    return REPO_ROOT / "configs" / "model" / f"tiny_{method}.yaml"


@pytest.mark.subprocess
def test_eval_all_puts_the_new_methods_beside_proxyclip(tmp_path):
    write_voc(tmp_path / "data", n=1)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    presets = [str(tiny_preset(method)) for method in NEW]
    cmd = [sys.executable, "-m", "proxyclip.eval_all", "--model", *presets, str(TINY_CONFIG), "--datasets", "voc21",
           "--data-root", str(tmp_path / "data"), "--output", str(tmp_path / "out")]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rows = {row["setting"]: row for row in summary["rows"]}
    assert list(rows) == [*(f"tiny_{m}" for m in NEW), "tiny_random"]                 # --model's order
    for method in NEW:
        record = json.loads((tmp_path / "out" / f"tiny_{method}" / "voc21" / "run.json").read_text())
        segmentor = record["config"]["model"]["segmentor"]["init_args"]
        own = yaml.safe_load((REPO_ROOT / "configs" / method / "voc21.yaml").read_text())
        assert segmentor["method"] == method and record["config"]["method_protocol"] == f"configs/{method}/voc21.yaml"
        stated = own["model"]["segmentor"]["init_args"].get("method_kwargs") or {}
        preset = yaml.safe_load(tiny_preset(method).read_text())["segmentor"].get("method_kwargs") or {}
        assert segmentor["method_kwargs"] == {**preset, **stated}, method   # the protocol's merged over the preset's
        metrics = json.loads((tmp_path / "out" / f"tiny_{method}" / "voc21" / "metrics.json").read_text())
        assert rows[f"tiny_{method}"]["mIoU"]["voc21"] == metrics["mIoU"] and metrics["method"] == method
    assert json.loads((tmp_path / "out" / "tiny_cass" / "voc21" / "run.json").read_text())["weights"] == {
        "clip": "random", "vfm": "random"}


@pytest.mark.subprocess
@pytest.mark.parametrize("method", NEW)
def test_weights_list_names_each_presets_sources(method, tmp_path):
    result = run_weights(tmp_path, "list", f"configs/model/{method}_vitb16.yaml")
    assert result.returncode == 1, result.stderr[-2000:]          # nothing is cached in these private caches
    out = result.stdout
    assert "ViT-B-16" in out and "openai" in out and "NOT CACHED" in out
    assert ("vit_base_patch8_224.dino" in out) == (method == "cass")     # only CASS builds a VFM


@pytest.mark.subprocess
def test_eval_all_puts_trident_and_corrclip_beside_the_others(tmp_path):
    """Step 12's methods in the same table as ProxyCLIP: Trident (its tiny preset: tiny CLIP, DINO ViT-B/16 and SAM)
    with its own voc21 protocol, which keeps the preset's tiny SAM, and CorrCLIP (tiny CLIP and DINO ViT-B/8) with a
    folder of region masks through eval_all's passthrough, so each runs by itself into the one output folder, whose
    summary then holds every setting."""
    from test_corrclip import tiny_corrclip_preset, write_masks
    from test_trident import BASE, PROTOCOL, TINY_SAM

    root = write_voc(tmp_path / "data", n=1)
    write_masks(root, tmp_path / "masks")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    trident = {**BASE, **PROTOCOL["voc21"][3], "sam_checkpoint": False, "sam_kwargs": TINY_SAM}
    runs = [([str(tiny_preset("trident"))], None),
            ([str(tiny_corrclip_preset(tmp_path))], {"instance_mask_path": str(tmp_path / "masks")}),
            ([str(TINY_CONFIG)], None)]
    for models, method_kwargs in runs:
        cmd = [sys.executable, "-m", "proxyclip.eval_all", "--model", *models, "--datasets", "voc21",
               "--data-root", str(tmp_path / "data"), "--output", str(tmp_path / "out")]
        if method_kwargs is not None:
            cmd += ["--model.segmentor.init_args.method_kwargs", json.dumps(method_kwargs)]
        run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rows = {row["setting"]: row for row in summary["rows"]}
    assert set(rows) == {"tiny_trident", "tiny_corrclip", "tiny_random"}
    for method in ("trident", "corrclip"):
        record = json.loads((tmp_path / "out" / f"tiny_{method}" / "voc21" / "run.json").read_text())
        assert record["config"]["method_protocol"] == f"configs/{method}/voc21.yaml"
        metrics = json.loads((tmp_path / "out" / f"tiny_{method}" / "voc21" / "metrics.json").read_text())
        assert metrics["method"] == method and rows[f"tiny_{method}"]["mIoU"]["voc21"] == metrics["mIoU"]
    options = json.loads((tmp_path / "out" / "tiny_trident" / "voc21" / "metrics.json").read_text())["method_options"]
    assert options == trident                     # the protocol's values over the preset's, its tiny random SAM kept


@pytest.mark.subprocess
@pytest.mark.parametrize("method", ("trident", "corrclip"))
def test_weights_list_names_step_12_sources(method, tmp_path):
    result = run_weights(tmp_path, "list", f"configs/model/{method}_vitb16.yaml")
    assert result.returncode == 1, result.stderr[-2000:]          # nothing is cached in these private caches
    out = result.stdout
    if method == "trident":
        assert "openai" in out and "vit_base_patch16_224.dino" in out and "sam_vit_b_01ec64.pth" in out
    else:
        assert "metaclip_fullcc" in out and "vit_base_patch8_224.dino" in out
