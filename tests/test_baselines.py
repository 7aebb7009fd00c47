"""SCLIP, ClearCLIP and NACLIP in the same harness: each last block against a float64 loop over crops and heads
written from proxyclip/methods/<method>/README.md, PAMR and the area threshold against references and hand cases, each method's
vocabularies, and each method run through main.py's CLI and eval_all on the fake VOC layout."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import REPO_ROOT, TINY_CLIP, TINY_CONFIG, VOCAB
from fake_datasets import write_voc
from proxyclip.method.clip_encoder import build_clip
from proxyclip.method.clip_tower import dense_clip_features
from proxyclip.method.last_block import LAST_BLOCKS, build_last_block
from proxyclip.method.pamr import pamr
from proxyclip.method.small_classes import suppress_small_classes

BASELINES = ("sclip", "clearclip", "naclip")
OWN_TESTS = ("scclip", "cass", "resclip", "trident", "corrclip")   # methods tested in tests/test_<method>.py (they need more than the 2-block tiny CLIP)
CASES = [("sclip", {}), ("clearclip", {}), ("clearclip", {"similarity": "query-key"}), ("naclip", {}),
         ("naclip", {"std": 2.5})]


def tiny_visual(quick_gelu: bool):
    torch.manual_seed(0)
    model, _ = build_clip(TINY_CLIP, None, quick_gelu)
    return model.visual.double().eval()


def gaussian_loop(gh, gw, std):
    """The neighbourhood bias entry by entry: patches at row-major positions, CLS (index 0) unbiased."""
    n = gh * gw
    bias = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            (ri, ci), (rj, cj) = divmod(i, gw), divmod(j, gw)
            bias[i + 1, j + 1] = math.exp(-((ri - rj) ** 2 + (ci - cj) ** 2) / (2 * std ** 2))
    return bias


def reference_last_block(method, options, block, x, grid):
    """One crop's tokens x [L, W] (CLS first) through the method's last block, one head at a time -> [L - 1, W]."""
    width = x.shape[-1]
    heads = block.attn.num_heads
    d = width // heads
    s = 1 / math.sqrt(d)
    y = F.layer_norm(x, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
    w_in, b_in = block.attn.in_proj_weight, block.attn.in_proj_bias
    q, k, v = (y @ w_in[i * width:(i + 1) * width].T + b_in[i * width:(i + 1) * width] for i in range(3))
    outputs = []
    for h in range(heads):
        qh, kh, vh = (t[:, h * d:(h + 1) * d] for t in (q, k, v))
        if method == "sclip":
            attn = torch.softmax(qh @ qh.T * s, dim=1) + torch.softmax(kh @ kh.T * s, dim=1)   # rows sum to 2
        elif method == "clearclip":
            keys = kh if options.get("similarity") == "query-key" else qh
            attn = torch.softmax(qh @ keys.T * s, dim=1)
        else:
            attn = torch.softmax(kh @ kh.T * s + gaussian_loop(*grid, options.get("std", 5.0)), dim=1)
        outputs.append(attn @ vh)
    out = torch.cat(outputs, dim=1) @ block.attn.out_proj.weight.T + block.attn.out_proj.bias
    if method != "sclip":
        return out[1:]                                   # ClearCLIP, NACLIP: no residual, no MLP
    x = x + out                                          # SCLIP keeps both
    z = F.layer_norm(x, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
    z = z @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias
    z = z * torch.sigmoid(1.702 * z) if type(block.mlp.gelu).__name__ == "QuickGELU" else F.gelu(z)
    return (x + z @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias)[1:]


@pytest.mark.parametrize("quick_gelu", [True, False], ids=["QuickGELU", "GELU"])
@pytest.mark.parametrize("method,options", CASES, ids=lambda c: c if isinstance(c, str) else "-".join(map(str, c.values())))
def test_last_block_equals_the_loop_over_crops_and_heads(method, options, quick_gelu):
    """open_clip's own forward up to the last block (a hook takes its input), then the method's last block, ln_post
    and proj, per crop and head in float64: equal to `dense_clip_features` with the strategy, at the native grid."""
    visual = tiny_visual(quick_gelu)
    entering = []
    visual.transformer.resblocks[-1].register_forward_pre_hook(lambda module, args: entering.append(args[0]))
    crops = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    with torch.no_grad():
        visual(crops)
        got = dense_clip_features(visual, crops, build_last_block(method, **options))      # [2, D, 14, 14]
        tokens = entering[0] if visual.transformer.batch_first else entering[0].transpose(0, 1)
        for crop, expected_tokens in zip(got, tokens):
            out = reference_last_block(method, options, visual.transformer.resblocks[-1], expected_tokens, (14, 14))
            expected = F.normalize(visual.ln_post(out) @ visual.proj, dim=-1)                 # [196, D]
            torch.testing.assert_close(crop.flatten(1).T, expected, rtol=1e-10, atol=1e-10)


def test_neighbourhood_bias_on_a_rectangular_grid():
    from proxyclip.method.gaussian_neighbourhood import gaussian_neighbourhood

    torch.testing.assert_close(gaussian_neighbourhood((3, 5), 5.0).double(), gaussian_loop(3, 5, 5.0), rtol=1e-6, atol=1e-7)


def test_every_method_has_its_last_block_and_unknown_ones_are_named():
    from proxyclip.errors import ProxyCLIPError

    assert list(LAST_BLOCKS) == ["proxyclip", *BASELINES, *OWN_TESTS]       # registration order: the order methods are listed in
    assert [LAST_BLOCKS[m].needs_vfm for m in ("proxyclip", *BASELINES, *OWN_TESTS)] == [True, False, False, False, False, True, False, True, True]
    with pytest.raises(ProxyCLIPError, match="Unknown method 'sclp'.*sclip"):
        build_last_block("sclp")
    with pytest.raises(ProxyCLIPError, match="do not fit the naclip method"):
        build_last_block("naclip", similarity="query-query")


# --- PAMR -------------------------------------------------------------------------------------------------
def reference_pamr(image, mask, steps, dilations):
    """The original's way: each neighbourhood tap as a dilated 3 x 3 convolution with a one-hot kernel."""
    def taps(x, d, centre):                                           # [B, K, H, W] -> [B, K, P, H, W]
        positions = [(i, j) for i in range(3) for j in range(3) if centre or (i, j) != (1, 1)]
        kernel = torch.zeros(len(positions), 1, 3, 3, dtype=x.dtype)
        for p, (i, j) in enumerate(positions):
            kernel[p, 0, i, j] = 1
        b, k, h, w = x.shape
        padded = F.pad(x, [d] * 4, mode="replicate").reshape(b * k, 1, h + 2 * d, w + 2 * d)
        return F.conv2d(padded, kernel, dilation=d).view(b, k, len(positions), h, w)

    std = torch.cat([taps(image, d, True) for d in dilations], dim=2).std(dim=2, keepdim=True)
    difference = (image.unsqueeze(2) - torch.cat([taps(image, d, False) for d in dilations], dim=2)).abs()
    affinity = (-difference / (1e-8 + 0.1 * std)).mean(dim=1, keepdim=True).softmax(dim=2)
    for _ in range(steps):
        mask = (torch.cat([taps(mask, d, False) for d in dilations], dim=2) * affinity).sum(dim=2)
    return mask


@pytest.mark.parametrize("dilations", [(8, 16), (1,), (2, 3, 5)])
def test_pamr_equals_the_convolution_reference(dilations):
    torch.manual_seed(1)
    image, mask = torch.randn(2, 3, 29, 41, dtype=torch.float64), torch.randn(2, 5, 29, 41, dtype=torch.float64)
    expected = reference_pamr(image, mask, 3, dilations)
    got = pamr(image, mask, 3, dilations)   # ours computes in fp32, as the original does
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)


def test_pamr_hand_case_uniform_image():
    """On a uniform image every neighbour weighs 1/8 (dilation 1): a one-hot centre of a 3 x 3 mask spreads to the
    8 others (each has the centre once among its 8 replicated neighbours), and leaves the centre empty."""
    image = torch.full((1, 3, 3, 3), 0.5)
    mask = torch.zeros(1, 1, 3, 3)
    mask[0, 0, 1, 1] = 1
    expected = torch.full((3, 3), 1 / 8)
    expected[1, 1] = 0
    torch.testing.assert_close(pamr(image, mask, 1, (1,))[0, 0], expected)


def test_pamr_hand_case_keeps_to_its_colour():
    """A two-colour image: a pixel's weight goes to neighbours of its own colour (affinity 0) far more than to the
    other colour's (affinity -|a - b| / (0.1 std))."""
    image = torch.zeros(1, 3, 1, 4)
    image[..., 2:] = 1.0                                                       # [0, 0 | 1, 1]
    mask = torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]]])
    out = pamr(image, mask, 1, (1,))[0, 0, 0]
    assert out[0] == 1.0 and out[3] == 0.0                                     # all neighbours of its colour
    # pixel 1: neighbours with replicate padding, row-major: 3 copies of each row above/below -> colours
    # [0, 0, 1] x 3 rows minus the centre: 5 of colour 0 (value 1) and 3 of colour 1 (value 0)
    std = torch.tensor([0.0] * 6 + [1.0] * 3).std()            # over the 9 taps of its 3 x 3 neighbourhood
    far = math.exp(-1 / (1e-8 + 0.1 * float(std)))
    torch.testing.assert_close(out[1], torch.tensor(5 / (5 + 3 * far)))


# --- area threshold ---------------------------------------------------------------------------------------
def test_area_threshold_hand_case(tiny_segmentor):
    """10 pixels: class 0 wins 2, class 1 wins 7, class 2 wins 1 (the rest of each pixel to the runner-up). Non-
    background total 8: with area_thd 1/8 class 2's area 1 is not > 1 (strict) and it goes; its pixel then falls
    to its runner-up, class 1; prob_thd is applied to the probabilities left after the removal."""
    winners = torch.tensor([0, 0, 1, 1, 1, 1, 1, 1, 1, 2])
    runner_up = torch.tensor([1, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    probs = torch.zeros(3, 1, 10)
    probs[winners, 0, torch.arange(10)] = 0.6
    probs[runner_up, 0, torch.arange(10)] = 0.3
    kept = suppress_small_classes(probs, 1 / 8)
    assert kept[2].abs().sum() == 0 and torch.equal(kept[:2], probs[:2])
    assert torch.equal(suppress_small_classes(probs, 0.12), probs)               # area 1 > 0.96: kept
    saved = tiny_segmentor.area_thd, tiny_segmentor.prob_thd
    try:
        tiny_segmentor.area_thd, tiny_segmentor.prob_thd = 1 / 8, 0.5
        # pixel 9 now has 0.3 for class 1 at most: below prob_thd 0.5 -> background
        assert tiny_segmentor.decide(probs)[0].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 0]
        tiny_segmentor.prob_thd = 0.0
        assert tiny_segmentor.decide(probs)[0].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
        tiny_segmentor.area_thd = None
        assert tiny_segmentor.decide(probs)[0].tolist() == winners.tolist()
    finally:
        tiny_segmentor.area_thd, tiny_segmentor.prob_thd = saved


def test_area_threshold_never_removes_the_background():
    probs = torch.zeros(2, 1, 4)
    probs[0, 0, :3], probs[1, 0, 3] = 1.0, 1.0
    assert torch.equal(suppress_small_classes(probs, 0.99), probs)    # class 1 holds all non-background pixels


# --- vocabularies and protocol configs ---------------------------------------------------------------------
def test_method_vocabularies():
    from datamodules.vocabulary_files import resolve_names_file
    from proxyclip.vocabulary import parse_vocabulary

    def read(name):
        return [line for line in resolve_names_file(name).read_text().splitlines() if line.strip()]

    # SCLIP's (= NACLIP's) files: synonyms, counted as its spec counts queries; background split into stuff names
    for name, classes, queries in (("sclip/voc21", 21, 56), ("sclip/voc20", 20, 30), ("sclip/coco_object", 81, 113)):
        lines = read(name)
        assert (len(lines), len(parse_vocabulary(lines)[0])) == (classes, queries), name
        assert ", " not in "".join(lines)                     # the original's ", " separator became "; "
    assert read("sclip/voc21")[15].startswith("person; ")
    assert read("sclip/voc20")[0] == "aeroplane"
    # ClearCLIP's: one query per class, and "background" a class of its own
    for name, classes in (("clearclip/voc21", 21), ("clearclip/coco_object", 81)):
        lines = read(name)
        assert len(lines) == len(parse_vocabulary(lines)[0]) == classes and lines[0] == "background", name


def protocol_configs():
    """Every method's per-benchmark files: configs/<method>/<benchmark>.yaml for each registered method but ProxyCLIP."""
    return sorted(p for m in LAST_BLOCKS if m != "proxyclip" for p in (REPO_ROOT / "configs" / m).glob("*.yaml"))


def test_protocol_configs_change_only_what_their_method_sets():
    """A method's per-benchmark file holds segmentor and data values only, never the model's identity."""
    files = protocol_configs()
    assert {p.parent.name for p in files} == {*BASELINES, *OWN_TESTS}
    assert len(files) == 8 * len({*BASELINES, *OWN_TESTS}) + 2          # Trident's configs also define pc459, ade847
    for path in files:
        data = yaml.safe_load(path.read_text())
        assert set(data) <= {"model", "data"}, path
        segmentor = data.get("model", {}).get("segmentor", {}).get("init_args", {})
        assert not {"clip_model", "clip_pretrained", "method", "vfm"} & set(segmentor), path
        assert (REPO_ROOT / "configs" / f"{path.stem}.yaml").is_file(), path     # over a benchmark of ours


# --- the CLI and eval_all ----------------------------------------------------------------------------------
EXPECTED_VOC21 = {   # what each method's repository runs on VOC21 (proxyclip/methods/<method>/README.md)
    "sclip": dict(logit_scale=65.0, area_thd=0.1, prob_thd=0.1, crop_size=224, stride=112, mode="slide", pamr_steps=0,
                  names_file="sclip/voc21", scale=[2048, 336]),
    "clearclip": dict(logit_scale=50, area_thd=None, prob_thd=0.5, crop_size=448, stride=224, mode="slide", pamr_steps=0,
                      names_file="clearclip/voc21", scale=[2048, 448]),
    "naclip": dict(logit_scale=40.0, area_thd=None, prob_thd=0.1, mode="whole", pamr_steps=10,
                   names_file="sclip/voc21", scale=[2048, 336]),
}


@pytest.mark.parametrize("method", BASELINES)
def test_each_method_runs_on_fake_voc_through_main(method, tmp_path, capsys):
    """`main.py test --config configs/voc21.yaml --model configs/model/tiny_<method>.yaml` (the method's preset, tiny
    and random): the method's own VOC21 values come with it."""
    from proxyclip.commands.cli import cli_main

    root = write_voc(tmp_path / "data", n=2)
    out = tmp_path / "out"
    cli = cli_main(["test", "--config", "configs/voc21.yaml", "--model", f"configs/model/tiny_{method}.yaml",
                    "--data.init_args.root", str(root), "--model.output_dir", str(out), "--trainer.logger", "false"])
    assert f"{method}'s own voc21 values" in capsys.readouterr().err
    seg, data = cli.model.segmentor, cli.datamodule
    assert seg.method == method and seg.vfm is None and type(seg.last_block) is LAST_BLOCKS[method]
    expected = EXPECTED_VOC21[method]
    for key in ("logit_scale", "area_thd", "prob_thd", "mode", "pamr_steps", *(("crop_size", "stride") if "crop_size" in expected else ())):
        assert getattr(seg, key) == expected[key], key
    assert (data.names_file, list(data.scale)) == (expected["names_file"], expected["scale"])
    assert seg.num_classes == 21 and len(seg.queries) == (21 if method == "clearclip" else 56)
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_images"] == 2 and report["num_classes"] == 21
    assert report["config"]["model"]["segmentor"]["init_args"]["method"] == method
    assert report["config"]["method_protocol"] == f"configs/{method}/voc21.yaml"     # the file the CLI added


@pytest.mark.subprocess
def test_eval_all_puts_methods_side_by_side(tmp_path):
    """Two model configs: one table, the methods as rows, the benchmarks as columns; a benchmark a method does
    not define (SCLIP has no PC459 protocol) is left out of its row as unsupported, not failed or missing."""
    write_voc(tmp_path / "data", n=2)      # no PC459 data: missing for ProxyCLIP, allowed below
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "proxyclip.eval_all", "--model", str(TINY_CONFIG.with_name("tiny_sclip.yaml")), str(TINY_CONFIG),
           "--datasets", "voc21", "pc459", "--data-root", str(tmp_path / "data"), "--output", str(tmp_path / "out"),
           "--allow-missing"]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == (
        "[eval_all] 2 of 3 benchmarks have numbers; missing: tiny_random / pc459 (allowed by --allow-missing); "
        "not defined by their method: tiny_sclip / pc459; exit code 0")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rows = {row["setting"]: row for row in summary["rows"]}
    assert list(rows) == ["tiny_sclip", "tiny_random"] and summary["benchmarks"] == ["voc21", "pc459"]   # --model's order
    sclip_run = json.loads((tmp_path / "out" / "tiny_sclip" / "voc21" / "run.json").read_text())
    segmentor = sclip_run["config"]["model"]["segmentor"]["init_args"]
    assert (segmentor["method"], segmentor["logit_scale"], segmentor["area_thd"]) == ("sclip", 65.0, 0.1)
    assert sclip_run["config"]["data"]["init_args"]["names_file"] == "sclip/voc21"
    # the CLI added SCLIP's own values, as for `proxyclip test`: the command names no protocol file itself
    assert sclip_run["config"]["method_protocol"] == "configs/sclip/voc21.yaml" and "/sclip/" not in sclip_run["command"]
    assert sclip_run["weights"] == {"clip": "random"}                                  # no VFM to name
    for setting, row in rows.items():
        metrics = json.loads((tmp_path / "out" / setting / "voc21" / "metrics.json").read_text())
        assert row["mIoU"]["voc21"] == metrics["mIoU"]
    assert rows["tiny_random"]["mIoU"]["pc459"].startswith("missing")
    assert rows["tiny_sclip"]["mIoU"]["pc459"] == "unsupported: sclip defines no pc459 protocol"
    markdown = (tmp_path / "out" / "summary.md").read_text()
    assert f"| tiny_sclip | {rows['tiny_sclip']['mIoU']['voc21']:.2f} | unsupported: sclip defines no pc459 protocol |" in markdown


def test_segmentor_without_vfm_segments_an_image():
    """The library path (`segment`) with a baseline: no VFM is built, PAMR and the area threshold run."""
    from proxyclip import build_segmentor

    proxyclip_only = dict(vfm=None, vfm_pretrained=None, vfm_kwargs=None, method_kwargs=None,
                          vfm_mean=None, vfm_std=None)   # the tiny model's
    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB, method="naclip", pamr_steps=2, area_thd=0.1,
                          crop_size=112, stride=56, pad_multiple=1, **proxyclip_only).eval()
    assert seg.vfm is None and not any("vfm" in key for key in seg.state_dict())
    image = (torch.rand(3, 90, 130) * 255).to(torch.uint8)
    labels = seg.segment(image)
    assert labels.shape == (90, 130) and labels.dtype == torch.int64 and labels.max() < len(VOCAB)
    expected = seg.decide(seg.class_probabilities(pamr(
        F.interpolate(((image.float() / 255 - seg.clip_mean) / seg.clip_std)[None], size=(90, 130), mode="bilinear",
                      align_corners=False), seg([image])[0][None], 2, (8, 16))[0]))
    assert torch.equal(labels, expected)


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.slow
@pytest.mark.parametrize("method", BASELINES + OWN_TESTS)
def test_each_protocol_resolves_over_its_benchmark(method):
    """`--config configs/<benchmark>.yaml --model <method preset>` resolves, for every benchmark the method defines,
    to the method's own values (the file the CLI adds), and keeps the benchmark's dataset and the preset's model."""
    from proxyclip.commands.eval_all import resolved_config

    preset = f"configs/model/{method}_vitb16.yaml"
    for own in sorted((REPO_ROOT / "configs" / method).glob("*.yaml")):
        masks = ["--model.segmentor.method_kwargs", "{instance_mask_path: masks}"] if method == "corrclip" else []
        code, printed, errors = resolved_config(["test", "--config", f"configs/{own.stem}.yaml", "--model", preset, *masks])
        assert code == 0, errors
        config = yaml.safe_load(printed)
        resolved = dict(_flatten(config))
        for key, value in _flatten(yaml.safe_load(own.read_text())):
            assert resolved[key] == value, (own, key)
        benchmark = yaml.safe_load((REPO_ROOT / "configs" / "data" / f"{own.stem}.yaml").read_text())
        assert config["data"]["class_path"] == benchmark["class_path"]
        assert config["model"]["segmentor"]["init_args"]["method"] == method
