"""A method another distribution adds (docs/adding_a_method.md): a toy package written in tmp_path, with a real
dist-info that declares it under the `proxyclip.methods` entry points, is listed, run by `test` (both protocols),
`predict` and eval_all, and refused like a shipped method.

The toy method is SCLIP's correlative attention with one typed option, `mix` (the weight of the query-query map
against the key-key one). Everything runs in subprocesses whose PYTHONPATH holds tmp_path, so that
importlib.metadata finds the dist-info there; this process's methods stay the shipped ones.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO_ROOT, TINY_CLIP
from fake_datasets import write_voc

BLOCK = '''"""The toy method's last block: SCLIP's correlative attention, its two maps weighted by `mix`."""
from __future__ import annotations

import torch

from proxyclip.method.clip_tower import Linear, merge_heads, scale_of, split_heads
from proxyclip.method.last_block.base import LAST_BLOCKS, LastBlock


@LAST_BLOCKS.register("toy")
class MixedCorrelativeAttention(LastBlock):
    """x + out_proj((mix softmax(q qT s) + (1 - mix) softmax(k kT s)) v), then x + mlp(ln_2(x)).

    Args:
        mix: the weight of the query-query map (the key-key map has 1 - mix).
    """

    summary = "a toy: mixed correlative self-attention"

    def __init__(self, mix: float = 0.5):
        super().__init__()
        if not 0.0 <= mix <= 1.0:
            raise ValueError(f"mix must be in [0, 1], got {mix}")
        self.mix = mix

    def forward(self, block, tokens, grid, linear: Linear, feats=None):
        q, k, v = split_heads(block, tokens, linear)
        s = scale_of(block)
        attn = self.mix * torch.softmax(q @ q.transpose(-1, -2) * s, dim=-1) \\
            + (1 - self.mix) * torch.softmax(k @ k.transpose(-1, -2) * s, dim=-1)
        x = tokens + block.ls_1(merge_heads(block, attn @ v, linear))
        x = x + block.ls_2(block.mlp(block.ln_2(x)))
        return x[:, 1:], grid
'''
#: the toy's own voc21 values: what differs from ProxyCLIP's benchmark config (crop 336, prob_thd 0.2, logit_scale 40)
TOY_VOC21 = {"model": {"segmentor": {"init_args": {"logit_scale": 55.0}}},
             "data": {"init_args": {"prob_thd": 0.15, "crop_size": 224, "stride": 112}}}
TOY_PRESET = {"segmentor": {"clip_model": TINY_CLIP, "clip_pretrained": None, "clip_quick_gelu": True, "method": "toy",
                            "method_kwargs": {"mix": 0.25}, "vfm": None, "pad_multiple": 1,
                            "clip_mean": [0.48145466, 0.4578275, 0.40821073],
                            "clip_std": [0.26862954, 0.26130258, 0.27577711]}}
PUBLISHED = {"method": "toy", "repository": "someone/toy", "commit": "0" * 40, "rows": [],
             "none": [{"preset": "tiny_toy", "reason": "a randomly initialised test model: no numbers exist"}]}


def write_toy_distribution(site: Path) -> Path:
    """The package `toy_method/` and its dist-info in `site` (a folder put on PYTHONPATH); returns the tiny preset."""
    package = site / "toy_method"
    (package / "protocol").mkdir(parents=True)
    (package / "presets").mkdir()
    (package / "__init__.py").write_text('"""The toy method, as one folder."""\nfrom . import block  # noqa: F401\n')
    (package / "block.py").write_text(BLOCK)
    (package / "protocol" / "voc21.yaml").write_text("# the toy's voc21 values\n" + yaml.safe_dump(TOY_VOC21))
    preset = package / "presets" / "tiny_toy.yaml"
    preset.write_text("# the toy with a tiny random CLIP: NEVER use it for numbers\n" + yaml.safe_dump(TOY_PRESET))
    (package / "published.yaml").write_text(yaml.safe_dump(PUBLISHED))
    (package / "README.md").write_text("# Toy\n\nSCLIP's attention with its two maps mixed (block.py).\n")
    info = site / "toy_method-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy_method\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[proxyclip.methods]\ntoy = toy_method\n")
    return preset


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(the tiny preset, the fake VOC root, the environment that sees the toy distribution)."""
    site = tmp_path_factory.mktemp("site")
    preset = write_toy_distribution(site)
    voc = write_voc(tmp_path_factory.mktemp("voc") / "data", n=2)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO_ROOT)])}
    return preset, voc, env


def run(env, *args, module: str | None = None):
    command = [sys.executable, "-m", module] if module else [sys.executable, str(REPO_ROOT / "main.py")]
    return subprocess.run([*command, *map(str, args)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def run_test(toy, out: Path, *extra) -> dict:
    preset, voc, env = toy
    result = run(env, "test", "--config", "configs/voc21.yaml", "--model", preset, "--data.init_args.root", voc,
                 "--model.output_dir", out, "--trainer.logger", "false", "--model.num_panels", "0",
                 "--trainer.enable_progress_bar", "false", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.subprocess
def test_the_toy_runs_its_own_protocol(toy, tmp_path):
    preset = toy[0]
    metrics = run_test(toy, tmp_path / "out")
    assert (metrics["method"], metrics["method_options"]) == ("toy", {"mix": 0.25})
    protocol = metrics["protocol"]
    assert protocol["name"] == "original"
    assert [Path(f).resolve() for f in protocol["files"]] == [(preset.parents[1] / "protocol" / "voc21.yaml").resolve()]
    values = protocol["values"]
    assert (values["logit_scale"], values["prob_thd"], values["crop_size"], values["stride"]) == (55.0, 0.15, 224, 112)


@pytest.mark.subprocess
def test_the_toy_runs_the_common_protocol(toy, tmp_path):
    metrics = run_test(toy, tmp_path / "out", "--protocol", "common")
    assert metrics["method"] == "toy"
    protocol = metrics["protocol"]
    stated = yaml.safe_load((REPO_ROOT / "configs" / "common" / "voc21.yaml").read_text())["data"]["init_args"]
    assert (protocol["name"], protocol["files"], protocol["exceptions"]) == ("common", ["configs/common/voc21.yaml"], {})
    assert protocol["values"]["prob_thd"] == stated["prob_thd"] and protocol["values"]["logit_scale"] != 55.0


@pytest.mark.subprocess
def test_the_toy_predicts(toy, tmp_path):
    preset, _, env = toy
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.jpg": (40, 70), "b.png": (64, 48)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    out = tmp_path / "predictions"
    result = run(env, "predict", "--config", "configs/demo.yaml", "--model", preset, "--data.init_args.inputs", tmp_path,
                 "--data.init_args.vocabulary", "sky, horse, grass", "--prediction_writer.output_dir", out,
                 "--trainer.logger", "false", "--trainer.enable_progress_bar", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(out.rglob("*.json"))) == 2


@pytest.mark.subprocess
def test_eval_all_runs_the_toy(toy, tmp_path):
    preset, voc, env = toy
    result = run(env, "--model", preset, "--datasets", "voc21", "voc20", "--data-root", voc.parents[1], "--output",
                 tmp_path / "out", "--trainer.enable_progress_bar", "false", module="proxyclip.eval_all")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "[eval_all] tiny_toy / voc21: ok" in lines
    assert "[eval_all] tiny_toy / voc20: unsupported: toy defines no voc20 protocol" in lines   # no protocol file
    metrics = json.loads((tmp_path / "out" / "tiny_toy" / "voc21" / "metrics.json").read_text())
    assert metrics["method"] == "toy" and metrics["protocol"]["values"]["logit_scale"] == 55.0
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["rows"]
    assert [row["setting"] for row in rows] == ["tiny_toy"]


@pytest.mark.subprocess
def test_the_toy_is_found_with_its_folder_presets_and_published_numbers(toy):
    preset, _, env = toy
    code = ("import json; from proxyclip.method.last_block import LAST_BLOCKS, method_folder; "
            "from proxyclip.commands import published as pub; "
            "print(json.dumps([list(LAST_BLOCKS), str(method_folder('toy')), str(pub.preset_file('tiny_toy')), "
            "pub.validate(pub.load_published()), pub.none_reason('tiny_toy'), pub.published_file_name('toy'), "
            "pub.published_file_name('sclip')]))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    methods, folder, preset_file, problems, reason, toy_file, sclip_file = json.loads(result.stdout)
    assert methods[0] == "proxyclip" and methods[-1] == "toy"          # after the shipped ones (listed_at 1000)
    assert Path(folder) == preset.parents[1] and Path(preset_file) == preset
    assert problems == [] and reason == PUBLISHED["none"][0]["reason"]
    assert Path(toy_file) == preset.parents[1] / "published.yaml"
    assert sclip_file == "proxyclip/methods/sclip/published.yaml"


@pytest.mark.subprocess
def test_the_toy_is_listed_and_refused_like_a_shipped_method(toy, tmp_path):
    preset, voc, env = toy
    help_text = " ".join(run(env, "test", "--model.segmentor.help", "proxyclip.TrainingFreeSegmentor").stdout.split())
    assert "toy (a toy: mixed correlative self-attention)" in help_text and "toy: mix (float, 0.5)" in help_text
    refusals = []
    for method, options in (("toy", "{mixx: 0.3}"), ("toy", "{mix: 2.0}"), ("naclip", "{stdd: 0.3}")):
        result = run(env, "test", "--config", "configs/voc21.yaml", "--model", preset, "--data.init_args.root", voc,
                     "--model.segmentor.method", method, "--model.segmentor.method_kwargs", options)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
        (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        refusals.append(line)
    unknown, out_of_range, shipped = refusals          # the toy's refusals are worded as a shipped method's
    assert "mixx is no method's option (did you mean mix?)" in unknown and "mix (float, default 0.5)" in unknown
    assert unknown.split(" cannot be given")[1].split(":")[0] == " to the toy method"
    assert "method_kwargs {mix: 2.0}: mix must be in [0, 1], got 2.0." in out_of_range
    assert "stdd is no method's option (did you mean std?)" in shipped and "std (float, default 5.0)" in shipped


def write_distribution(site: Path, name: str, init: str) -> None:
    """A distribution `name` in `site` whose entry point names its package, `init` its __init__.py."""
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text(init)
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[proxyclip.methods]\n{name.split('_')[0]} = {name}\n")


@pytest.mark.parametrize("init, needle", [
    ("import not_installed_anywhere\n", "ModuleNotFoundError: No module named 'not_installed_anywhere'"),
    ("from proxyclip.method.last_block.base import LAST_BLOCKS, LastBlock\n"
     "LAST_BLOCKS.register('sclip', type('Clash', (LastBlock,), {}))\n", "method 'sclip' is registered twice"),
], ids=["broken", "clash"])
def test_a_distribution_that_cannot_be_imported_is_named_with_its_fix(init, needle, tmp_path, monkeypatch):
    """Its import fails before it registers anything: this process's methods stay the shipped ones."""
    from proxyclip.errors import ProxyCLIPError
    from proxyclip.method.last_block import LAST_BLOCKS, load_methods

    before = list(LAST_BLOCKS)
    write_distribution(tmp_path, "bad_method", init)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ProxyCLIPError) as info:
        load_methods()
    message = str(info.value)
    assert "The method 'bad' that the installed distribution bad_method declares" in message, message
    assert needle in message and "Fix or uninstall that distribution." in message
    assert list(LAST_BLOCKS) == before
