"""A method's options merge key by key along the command line (proxyclip/commands/merged_options.py): one key given on
the command line keeps every value of the method's protocol file and of its preset; never a wholesale replacement.

What is checked is what was built: the segmentor's `method_options`, its method's defaults filled in."""
from __future__ import annotations

import json

import pytest
import yaml

from conftest import REPO_ROOT
from fake_datasets import WRITERS
from test_tiny_presets import SMALL
from proxyclip.commands.eval_all import resolved_config   # what eval_all resolves, hashes and runs per benchmark

CONFIGS = REPO_ROOT / "configs"
# each method's one key given on the command line, with a value no protocol file or tiny preset gives it
ONE_KEY = {"proxyclip": ("beta", 1.0), "clearclip": ("similarity", "query-key"), "naclip": ("std", 4.0),
           "scclip": ("res_cls", 0.2), "cass": ("gaussian_std", 4.0), "resclip": ("gaussian_std", 4.0),
           "trident": ("sam_mask_coff", 0.01), "corrclip": ("tau", 3.0)}
TINY = {method: CONFIGS / "model" / ("tiny_random.yaml" if method == "proxyclip" else f"tiny_{method}.yaml")
        for method in ONE_KEY}
PROTOCOLS = sorted((p.parent.name, p.stem) for p in CONFIGS.glob("*/*.yaml")
                   if p.parent.name in ONE_KEY)                # configs/<method>/<benchmark>.yaml
# the fast tier builds the issue's case (Trident's Cityscapes); the slow tier every file and method
FAST = ("trident", "cityscapes")
AGAIN = {**{method: benchmark for method, benchmark in reversed(PROTOCOLS)}, FAST[0]: FAST[1]}


def kwargs_of(path) -> dict:
    """The method_kwargs a preset (segmentor:) or a protocol file (model: segmentor: init_args:) sets."""
    spec = yaml.safe_load(path.read_text())
    segmentor = spec.get("segmentor") or ((spec.get("model") or {}).get("segmentor") or {}).get("init_args") or {}
    return dict(segmentor.get("method_kwargs") or {})


def build(args: list[str], benchmark: str, tmp_path, out: str = "out"):
    """`main.py test <args>` in this process on a fake one-image `benchmark` layout; the CLI, with what it built."""
    from proxyclip.commands.cli import cli_main

    if "corrclip" in " ".join(args):
        pytest.importorskip("sam2")
    folder = tmp_path / "data" / benchmark
    root = WRITERS[benchmark](folder, n=1) if not folder.exists() else build.roots[folder]
    build.roots[folder] = root
    method = next((m for m in SMALL if m in " ".join(args)), None)     # images resized small where that is slow
    small = ["--data.init_args.scale", SMALL[method]] if method and "config.yaml" not in args[1] else []
    return cli_main(["test", *args, "--data.init_args.root", str(root), "--model.output_dir", str(tmp_path / out),
                     "--trainer.logger", "false", *small])


build.roots = {}


def expected_options(method: str, *layers: dict) -> dict:
    from proxyclip.method.method_options import method_option_types

    options = {name: default for name, (_, default) in method_option_types(method).items()}
    for layer in layers:
        options.update(layer)
    return options


def same(built: dict, expected: dict) -> bool:
    """Equal once tuples and lists are compared alike (a typed option holds a tuple where YAML gave a list)."""
    return json.loads(json.dumps(built)) == json.loads(json.dumps(expected))


def test_the_issue_command_keeps_tridents_cityscapes_values():
    code, printed, errors = resolved_config(["test", "--config", "configs/cityscapes.yaml", "--model",
                                          "configs/model/trident_vitb16.yaml", "--model.segmentor.method_kwargs",
                                          "{sam_checkpoint: false}"])
    assert code == 0, errors[-2000:]
    resolved = yaml.safe_load(printed)
    kwargs = resolved["model"]["segmentor"]["init_args"]["method_kwargs"]
    assert kwargs["cos_fac"] == 3.0 and kwargs["split_halves"] is True and kwargs["sam_checkpoint"] is False
    assert kwargs == {**kwargs_of(CONFIGS / "model" / "trident_vitb16.yaml"),
                      **kwargs_of(CONFIGS / "trident" / "cityscapes.yaml"), "sam_checkpoint": False}
    assert resolved["method_protocol"] == "configs/trident/cityscapes.yaml"


@pytest.mark.parametrize("method, benchmark", [
    pytest.param(m, b, marks=() if (m, b) == FAST else pytest.mark.slow) for m, b in PROTOCOLS])
def test_one_key_keeps_every_protocol_value(method, benchmark, tmp_path):
    """For every protocol file: the tiny preset, the file, then one key on the command line, as built."""
    key, value = ONE_KEY[method]
    cli = build(["--config", f"configs/{benchmark}.yaml", "--model", str(TINY[method]),
                 "--model.segmentor.method_kwargs", json.dumps({key: value})], benchmark, tmp_path)
    protocol = kwargs_of(CONFIGS / method / f"{benchmark}.yaml")
    expected = expected_options(method, kwargs_of(TINY[method]), protocol, {key: value})
    built = dict(cli.model.segmentor.method_options)
    assert same(built, expected), (built, expected)
    assert all(same(built[name], given) for name, given in protocol.items() if name != key)   # every other one kept
    assert built[key] == value
    ran = json.loads((tmp_path / "out" / "metrics.json").read_text())["method_options"]
    assert same(ran, expected)
    if benchmark != AGAIN.get(method):
        return
    # the saved config.yaml of that run runs again to the same options, nothing given twice (once per method)
    saved = tmp_path / "out" / "config.yaml"
    again = build(["--config", str(saved)], benchmark, tmp_path, out="again")
    assert same(dict(again.model.segmentor.method_options), expected)


@pytest.mark.parametrize("method", [pytest.param(m, marks=() if m == FAST[0] else pytest.mark.slow) for m in sorted(ONE_KEY)])
def test_one_key_under_the_common_protocol_keeps_the_post_processing_off(method, tmp_path):
    from proxyclip.method.last_block import LAST_BLOCKS

    key, value = ONE_KEY[method]
    cli = build(["--config", "configs/voc21.yaml", "--model", str(TINY[method]), "--protocol", "common",
                 "--model.segmentor.method_kwargs", json.dumps({key: value})], "voc21", tmp_path)
    off = dict(LAST_BLOCKS[method].post_processing_off)
    expected = expected_options(method, kwargs_of(TINY[method]), off, {key: value})
    assert same(dict(cli.model.segmentor.method_options), expected)


def test_a_later_key_wins_and_null_starts_from_the_defaults():
    args = ["test", "--config", "configs/voc21.yaml", "--model", "configs/model/trident_vitb16.yaml"]
    code, printed, errors = resolved_config([*args, "--model.segmentor.method_kwargs", "{cos_fac: 2.0, beta: 1.0}",
                                          "--model.segmentor.init_args.method_kwargs", "{cos_fac: 0.5}"])
    assert code == 0, errors[-2000:]
    kwargs = yaml.safe_load(printed)["model"]["segmentor"]["init_args"]["method_kwargs"]
    assert (kwargs["cos_fac"], kwargs["beta"], kwargs["sam"]) == (0.5, 1.0, "vit_b")
    code, printed, errors = resolved_config([*args, "--model.segmentor.method_kwargs", "null"])
    assert code == 0, errors[-2000:]
    assert yaml.safe_load(printed)["model"]["segmentor"]["init_args"]["method_kwargs"] is None


def test_another_method_does_not_inherit_the_last_ones_options():
    """default.yaml sets ProxyCLIP's {beta, gamma}; choosing NACLIP afterwards starts from NACLIP's defaults."""
    code, printed, errors = resolved_config(["test", "--config", "configs/voc21.yaml", "--model.segmentor.method", "naclip",
                                          "--model.segmentor.vfm", "null", "--model.segmentor.vfm_pretrained", "null",
                                          "--model.segmentor.vfm_mean", "null", "--model.segmentor.vfm_std", "null"])
    assert code == 0, errors[-2000:]
    assert yaml.safe_load(printed)["model"]["segmentor"]["init_args"]["method_kwargs"] is None
