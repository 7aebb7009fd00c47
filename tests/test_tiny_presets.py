"""The tiny random presets: configs/model/tiny_random.yaml (ProxyCLIP) and tiny_<method>.yaml for every other method.

Each is its method's real preset (configs/model/<method>_vitb16.yaml) with tiny random encoders of the same kind: the
block count the method indexes, the heads it pairs, the real preset's activation, the VFM and SAM kinds. Each runs
`main.py test` on a fake VOC layout in this process with no network (a connection attempt is recorded and fails) and
no weights (every source random), with the method's own voc21 values added by the CLI, as a user's try would.
"""
from __future__ import annotations

import json
import os
import socket

import pytest
import yaml

from conftest import REPO_ROOT
from fake_datasets import write_voc
from proxyclip.method.last_block import LAST_BLOCKS

MODELS = REPO_ROOT / "configs" / "model"
METHODS = [m for m in LAST_BLOCKS if m != "proxyclip"]
TINY = {"proxyclip": "tiny_random", **{m: f"tiny_{m}" for m in METHODS}}
#: the methods that read CLIP's blocks by index (ResCLIP's RCS 5..8, SC-CLIP's 3..10, CorrCLIP's spatial branch by
#: depth): their tiny CLIP keeps ViT-B/16's 12 blocks
INDEXED = {"resclip", "scclip", "corrclip"}
#: the method options a tiny preset may set beyond its real preset's: what makes SAM / SAM 2 tiny, random and local
TINY_OPTIONS = {"trident": {"sam_checkpoint", "sam_kwargs"},
                "corrclip": {"mask_generator", "sam2_model", "sam2_checkpoint", "sam2_overrides", "points_per_side",
                             "pred_iou_thresh", "stability_score_thresh"}}
ENCODERS = {"clip_model", "clip_pretrained", "vfm_pretrained", "vfm_kwargs", "method_kwargs"}
#: images resized small where the method's own post-processing is slow on a CPU at the protocol's size (the values
#: of the methods' own CLI tests); a later command-line value wins over the protocol's
SMALL = {"resclip": "[80, 40]", "cass": "[400, 230]", "corrclip": "[400, 60]"}


def segmentor(stem: str) -> dict:
    return yaml.safe_load((MODELS / f"{stem}.yaml").read_text())["segmentor"]


def test_every_method_has_one_and_nothing_else_is_tiny():
    assert sorted(p.stem for p in MODELS.glob("tiny_*.yaml")) == sorted(TINY.values())
    for method, stem in TINY.items():
        assert segmentor(stem)["method"] == method, stem


@pytest.mark.parametrize("method", METHODS)
def test_each_is_its_method_s_preset_with_tiny_random_encoders(method):
    tiny, real = segmentor(f"tiny_{method}"), segmentor(f"{method}_vitb16")
    assert {k: v for k, v in tiny.items() if k not in ENCODERS} == {k: v for k, v in real.items() if k not in ENCODERS}
    assert tiny["clip_pretrained"] is None and isinstance(tiny["clip_model"], dict)         # an inline model config
    assert tiny["clip_quick_gelu"] is real["clip_quick_gelu"] is True                          # the real activation
    assert (tiny["clip_model"]["vision_cfg"]["layers"] == 12) == (method in INDEXED), method
    assert tiny["clip_model"]["vision_cfg"]["patch_size"] == 16                                # ViT-B/16's patch
    if real.get("vfm") is not None:
        assert tiny["vfm_pretrained"] is False and tiny["vfm_kwargs"]["depth"] <= 2
    else:
        assert not {"vfm_pretrained", "vfm_kwargs"} & set(tiny)
    options, own = tiny.get("method_kwargs") or {}, real.get("method_kwargs") or {}
    extra = TINY_OPTIONS.get(method, set())
    assert set(options) - set(own) <= extra                                  # the rest as the real preset's
    assert {k: v for k, v in options.items() if k not in extra} == {k: v for k, v in own.items() if k not in extra}
    if method == "trident":                     # SAM ViT-B's kind, tiny, its last block global (the one Trident reads)
        assert (options["sam"], options["sam_checkpoint"]) == ("vit_b", False)
        assert options["sam_kwargs"]["global_attn_indexes"] == [options["sam_kwargs"]["depth"] - 1]
    if method == "corrclip":                    # the original's SAM 2 generator, tiny and random
        assert (options["mask_generator"], options["sam2_checkpoint"]) == ("sam2", False)
    if method == "cass":                        # DINO's heads and head width are CLIP's: CASS pairs them
        vision = tiny["clip_model"]["vision_cfg"]
        assert (tiny["vfm_kwargs"]["embed_dim"], tiny["vfm_kwargs"]["num_heads"]) == (
            vision["width"], vision["width"] // vision["head_width"])


@pytest.mark.parametrize("method", METHODS)
def test_each_says_what_it_is_and_how_to_try_it(method):
    header = [line for line in (MODELS / f"tiny_{method}.yaml").read_text().splitlines() if line.startswith("#")]
    text = " ".join(line.lstrip("# ") for line in header)
    assert f"({method}_vitb16.yaml)" in text and "NEVER use it for numbers" in text and "meaningless" in text
    assert header[-1] == (f"#   python main.py test --config configs/voc21.yaml --model configs/model/tiny_{method}.yaml "
                          "--data.init_args.root DIR")


@pytest.fixture
def no_network(monkeypatch):
    """Every outgoing connection fails and is recorded (a library that falls back quietly is still caught)."""
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"no network in this test (connect to {address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return attempts


def needs_sam2(method: str) -> list:
    if method != "corrclip" or os.environ.get("CI"):
        return []                               # CI installs the sam2 extra: never a silent skip there
    try:
        import sam2  # noqa: F401
        return []
    except ImportError:
        return [pytest.mark.skip(reason="tiny_corrclip's SAM 2 needs the sam2 extra (pip install .[sam2])")]


@pytest.mark.parametrize("method", [pytest.param(m, marks=needs_sam2(m)) for m in TINY])
def test_each_runs_through_main_offline_with_no_weights(method, tmp_path, no_network, capsys):
    from proxyclip.commands.cli import cli_main
    from proxyclip.commands.weights import load_model_spec, weights_provenance

    stem = TINY[method]
    provenance = weights_provenance(load_model_spec(MODELS / f"{stem}.yaml"))
    assert set(provenance.values()) == {"random"}, provenance        # CLIP, the VFM, SAM / SAM 2: nothing to load
    root = write_voc(tmp_path / "data", n=1)
    out = tmp_path / "out"
    small = ["--data.init_args.scale", SMALL[method]] if method in SMALL else []
    cli_main(["test", "--config", "configs/voc21.yaml", "--model", f"configs/model/{stem}.yaml",
              "--data.init_args.root", str(root), "--model.output_dir", str(out), "--trainer.logger", "false", *small])
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_images"] == 1 and report["num_classes"] == 21 and report["method"] == method
    own = None if method == "proxyclip" else f"configs/{method}/voc21.yaml"
    assert report["config"]["method_protocol"] == own
    if own:
        printed = capsys.readouterr()
        assert f"{method}'s own voc21 values" in printed.out + printed.err
    assert no_network == []
