"""ResCLIP (proxyclip/methods/resclip/README.md): the method's dense features against a float64 loop over crops and heads
written from the specification (both passes of the last block and the whole semantic-feedback pipeline), each SFR
op on a hand-computed case, the typed options, and main.py's CLI on every benchmark the original defines."""
import collections
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import REPO_ROOT, TINY_CLIP, TINY_CONFIG, VOCAB
from fake_datasets import WRITERS
from test_baselines import gaussian_loop, reference_pamr
from proxyclip.errors import ProxyCLIPError
from proxyclip.method.clip_encoder import build_clip
from proxyclip.methods.resclip.feedback_affinity import (blur_keys, feedback_affinity, patch_votes, query_labels,
                                                straight_path_valid)
from proxyclip.method.last_block import LAST_BLOCKS, Crops, build_last_block

TINY_CLIP_12 = {**TINY_CLIP, "vision_cfg": {**TINY_CLIP["vision_cfg"], "layers": 12}}   # RCS reads blocks 5..8
BENCHMARKS = ("voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff", "cityscapes", "ade20k")


# --- the float64 reference, from the specification ------------------------------------------------------------
def layer_norm(x, ln):
    return F.layer_norm(x, (x.shape[-1],), ln.weight, ln.bias, ln.eps)


def heads_of(block, x):
    """x [T, W] -> per head (q, k, v) [T, d] of ln_1(x)."""
    width, heads = x.shape[-1], block.attn.num_heads
    d = width // heads
    y = layer_norm(x, block.ln_1)
    w, b = block.attn.in_proj_weight, block.attn.in_proj_bias
    q, k, v = (y @ w[i * width:(i + 1) * width].T + b[i * width:(i + 1) * width] for i in range(3))
    return [tuple(t[:, h * d:(h + 1) * d] for t in (q, k, v)) for h in range(heads)], 1 / math.sqrt(d)


def mlp(block, x):
    z = layer_norm(x, block.ln_2) @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias
    z = z * torch.sigmoid(1.702 * z) if type(block.mlp.gelu).__name__ == "QuickGELU" else F.gelu(z)
    return z @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias


def out_proj(block, per_head):
    return torch.cat(per_head, dim=1) @ block.attn.out_proj.weight.T + block.attn.out_proj.bias


def reference_tokens(visual, image):
    """image [3, H, W] -> (tokens entering the last block [T, W], per-head attention of every earlier block, grid)."""
    patch = visual.conv1.kernel_size[0]
    gh, gw = image.shape[1] // patch, image.shape[2] // patch
    x = F.conv2d(image[None, :, :gh * patch, :gw * patch], visual.conv1.weight, stride=patch)[0]   # [W, gh, gw]
    x = x.reshape(x.shape[0], -1).T
    table = visual.positional_embedding
    side = math.isqrt(table.shape[0] - 1)
    pos = table[1:]
    if (gh, gw) != (side, side):      # NACLIP's resize: bicubic, scale factor (g + 0.1) / side
        grid = pos.T.reshape(1, -1, side, side)
        pos = F.interpolate(grid, scale_factor=((gh + 0.1) / side, (gw + 0.1) / side), mode="bicubic",
                            align_corners=False)[0].reshape(table.shape[1], -1).T
    x = torch.cat([visual.class_embedding[None], x]) + torch.cat([table[:1], pos])
    x = layer_norm(x, visual.ln_pre)
    maps = []
    for block in visual.transformer.resblocks[:-1]:
        per_head, s = heads_of(block, x)
        probs = [torch.softmax((q * s) @ k.T, dim=1) for q, k, _ in per_head]
        maps.append(probs)
        x = x + out_proj(block, [p @ v for p, (_, _, v) in zip(probs, per_head)])
        x = x + mlp(block, x)
    return x, maps, (gh, gw)


def reference_last_block(block, x, grid, base, rcs, rcs_weights, affinity=None, sfr_weights=None):
    """One pass of the last block, head by head -> [T, W]."""
    per_head, s = heads_of(block, x)
    outs = []
    for h, (q, k, v) in enumerate(per_head):
        def mix(w):
            if affinity is None:
                return w
            tau, lam = sfr_weights
            return tau * ((1 - lam) * w + lam * affinity)
        if base == "naclip":
            a = torch.softmax(mix(k @ k.T * s) + gaussian_loop(*grid, 5.0), dim=1)
        elif base == "clearclip":
            a = torch.softmax(mix(q @ q.T * s), dim=1)
        else:
            a = torch.softmax(mix(q @ q.T * s), dim=1) + torch.softmax(mix(k @ k.T * s), dim=1)
        tau, lam = rcs_weights
        a = tau * ((1 - lam) * a + lam * rcs[h])
        outs.append(a @ v)
    out = out_proj(block, outs)
    if base != "sclip":
        return out
    x = x + out
    return x + mlp(block, x)


def reference_votes(labels, patch):
    """labels [H, W] -> [gh][gw] most frequent label per block, the smallest on a tie."""
    gh, gw = labels.shape[0] // patch, labels.shape[1] // patch
    votes = []
    for r in range(gh):
        row = []
        for c in range(gw):
            counts = collections.Counter(labels[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch].flatten().tolist())
            top = max(counts.values())
            row.append(min(label for label, n in counts.items() if n == top))
        votes.append(row)
    return votes


def reference_affinity(votes, std=5.0):
    """votes [gh][gw] -> (S [N, N] float64 as spec §3.7, number of same-label pairs whose path check failed)."""
    gh, gw = len(votes), len(votes[0])
    n, last = gh * gw, max(gh, gw) - 1
    t = torch.linspace(0, 1, last + 1, dtype=torch.float32).numpy()      # the original's float32 samples
    one = np.float32(1)
    s1 = torch.zeros(n, n, dtype=torch.float64)
    decayed = 0
    for i in range(n):
        ri, ci = divmod(i, gw)
        for j in range(n):
            rj, cj = divmod(j, gw)
            if votes[ri][ci] != votes[rj][cj]:
                continue
            steps = max(abs(ri - rj), abs(ci - cj))
            ok = True
            for m in range(steps + 1):          # only the first steps + 1 of the last + 1 samples
                r = int(np.round(np.float32(ri) * (one - t[m]) + np.float32(rj) * t[m]))
                c = int(np.round(np.float32(ci) * (one - t[m]) + np.float32(cj) * t[m]))
                ok = ok and votes[r][c] == votes[ri][ci]
            s1[i, j] = 1.0 if ok else math.exp(-steps / last)
            decayed += not ok
    size = min(n, int(6 * std + 1))
    size += 1 - size % 2
    taps = [math.exp(-(x - size // 2) ** 2 / (2 * std ** 2)) for x in range(size)]
    taps = [g / sum(taps) for g in taps]
    blurred = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            blurred[i, j] = max(0.0, sum(taps[m] * float(s1[i, j + m - size // 2]) for m in range(size)
                                         if 0 <= j + m - size // 2 < n))
    return blurred / (blurred.sum(dim=1, keepdim=True) + 1e-8), decayed


def reference_first_pass(visual, image, options):
    """-> (tokens entering the last block, RCS maps per head, grid, unit patch features of the first pass [N, E])."""
    x, maps, grid = reference_tokens(visual, image)
    rcs = [sum(maps[layer][h] for layer in (5, 6, 7, 8)) / 4 for h in range(len(maps[0]))]
    first = reference_last_block(visual.transformer.resblocks[-1], x, grid, options["base"], rcs, options["rcs_weights"])
    return x, rcs, grid, F.normalize(layer_norm(first[1:], visual.ln_post) @ visual.proj, dim=-1)


def reference_crop(visual, image, text, options, logit_scale=40.0):
    """One crop [3, H, W] through ResCLIP, float64 -> (unit embeddings [N, E], what the feedback decided)."""
    x, rcs, grid, f = reference_first_pass(visual, image, options)
    logits = (f @ text.T).T.reshape(-1, *grid)
    logits = F.interpolate(logits[None], size=image.shape[1:], mode="bilinear", align_corners=False)
    logits = reference_pamr(image[None], logits, 10, (8, 16))[0]
    probs = torch.softmax(logit_scale * logits, dim=0)
    best, labels = probs.max(dim=0)
    labels[best < options["temp_thd"]] = 0
    votes = reference_votes(labels, visual.conv1.kernel_size[0])
    s2, decayed = reference_affinity(votes)
    affinity = torch.zeros(s2.shape[0] + 1, s2.shape[0] + 1, dtype=torch.float64)
    affinity[1:, 1:] = s2
    affinity = affinity / affinity.max()
    block = visual.transformer.resblocks[-1]
    final = reference_last_block(block, x, grid, options["base"], rcs, options["rcs_weights"], affinity,
                                 options["sfr_weights"])
    out = F.normalize(layer_norm(final[1:], visual.ln_post) @ visual.proj, dim=-1)
    return out, dict(votes=votes, decayed=decayed, below=int((best < options["temp_thd"]).sum()), pixels=best.numel())


@pytest.fixture(scope="module")
def visual():
    torch.manual_seed(0)
    model, _ = build_clip(TINY_CLIP_12, None, None)
    return model.visual.double().eval()


@pytest.mark.parametrize("base", ["naclip", "sclip", "clearclip"])
def test_dense_equals_the_float64_loop_over_crops_and_heads(visual, base):
    """Two 120 x 170 crops (a 7 x 10 grid, 8 rows and 10 columns left over: the position table resized, the
    leftover pixels outside the votes): ResCLIP's unit embeddings equal the loop's, both passes and the feedback.
    Ours runs the feedback's PAMR in fp32 (as the original), the loop in float64: the labels agree unless a pixel
    sits within ~1e-6 of a decision, which these seeds avoid."""
    torch.manual_seed(1)
    crops = torch.randn(2, 3, 120, 170, dtype=torch.float64)
    options = dict(temp_thd={"clearclip": 0.4}.get(base, 0.6), rcs_weights=(2.0, 0.3), sfr_weights=(2.2, 0.7), base=base)
    # queries: the first pass's features at five patches of the first crop, so that the labels vary over the grid
    text = reference_first_pass(visual, crops[0], options)[3][[0, 9, 34, 60, 69]]
    block = build_last_block("resclip", **options)
    with torch.no_grad():
        got = block.dense(Crops(visual, crops, text, 40.0))                                  # [2, E, 7, 10]
        assert got.shape == (2, visual.proj.shape[1], 7, 10)
        decisions = []
        for crop, image in zip(got, crops):
            expected, decided = reference_crop(visual, image, text, options)
            torch.testing.assert_close(crop.flatten(1).T, expected, rtol=1e-9, atol=1e-9)
            decisions.append(decided)
    # the case exercises every rule: several labels, some pixels under temp_thd, some paths decayed
    assert max(len({v for row in d["votes"] for v in row}) for d in decisions) > 1, decisions
    assert 0 < sum(d["below"] for d in decisions) < sum(d["pixels"] for d in decisions), decisions
    assert sum(d["decayed"] for d in decisions) > 0, decisions


# --- the SFR ops on hand cases ------------------------------------------------------------------------------------
def test_query_labels_first_maximum_and_threshold():
    probs = torch.tensor([[[0.2, 0.5], [0.1, 0.7]],
                          [[0.4, 0.5], [0.3, 0.2]],
                          [[0.4, 0.0], [0.6, 0.1]]])[None]          # [1, 3 queries, 2, 2]
    assert query_labels(probs, 0.0)[0].tolist() == [[1, 0], [2, 0]]     # ties: the first query
    assert query_labels(probs, 0.45)[0].tolist() == [[0, 0], [2, 0]]    # 0.4 < 0.45 -> query 0


def test_patch_votes_hand_case_with_a_tie():
    """2 x 2 blocks of a 4 x 5 map (the fifth column is outside every block). Block (0, 0): 3, 3, 1, 1 -> tie ->
    1 (the smallest); block (0, 1): 2, 2, 2, 0 -> 2; block (1, 0): all 4; block (1, 1): 0, 1, 2, 3 -> 0."""
    labels = torch.tensor([[3, 3, 2, 2, 4],
                           [1, 1, 2, 0, 4],
                           [4, 4, 0, 1, 1],
                           [4, 4, 2, 3, 1]])[None]
    assert patch_votes(labels, 2, 5)[0].tolist() == [[1, 2], [4, 0]]


def test_patch_votes_equal_cpu_torch_mode():
    """The rule is the smallest of the most frequent labels, which is what torch.mode does on CPU (not on CUDA)."""
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 4, (3, 12, 20), generator=g)          # small blocks of few labels: many ties
    blocks = labels[:, :12, :20].reshape(3, 3, 4, 5, 4).transpose(2, 3).reshape(3, 3, 5, 16)
    assert torch.equal(patch_votes(labels, 4, 4), torch.mode(blocks, dim=-1).values)


def test_straight_path_hand_cases():
    """1 x 4, labels [0, 1, 0, 0]: S = 3, t = 0, 1/3, 2/3, 1. 0 -> 2 samples columns 0, 1 (0.67), 1 (1.33): label 1
    on the way, invalid, and so is 2 -> 0; 0 -> 1 samples only m <= 1 (0, 0.33 -> 0): valid although 1's label is
    another (the partial-segment rule); 2 -> 3 and 3 -> 2 valid."""
    valid = straight_path_valid(torch.tensor([[[0, 1, 0, 0]]]))[0]
    assert not valid[0, 2] and not valid[2, 0] and not valid[0, 3] and not valid[3, 0]
    assert valid[0, 1] and valid[1, 0] and valid[2, 3] and valid[3, 2] and valid.diagonal().all()
    # 3 x 5, S = 4, t = 0, .25, .5, .75, 1: (0, 0) -> (2, 1) samples rows 0, .5, 1 and cols 0, .25, .5 -> rounded
    # half to even (0, 0), (0, 0), (1, 0); half away from zero would visit (1, 1) at m = 1, which holds another label
    votes = torch.zeros(1, 3, 5, dtype=torch.long)
    votes[0, 1, 1] = 7
    valid = straight_path_valid(votes)[0]
    assert valid[0, 2 * 5 + 1]                      # (0, 0) -> (2, 1): (1, 1) is not on the rounded path
    assert not valid[0, 2 * 5 + 2]                  # (0, 0) -> (2, 2): (1, 1) is


def test_blur_keys_hand_case():
    """N = 3, std 0.5: size min(3, int(4)) = 3, taps exp(-x^2 / 0.5) for x = -1, 0, 1, normalised to [a, b, a];
    zero padding: row [1, 0, 0] -> [b, a, 0], row [0, 1, 0] -> [a, b, a]."""
    a, b = math.exp(-2), 1.0
    a, b = a / (2 * a + b), b / (2 * a + b)
    rows = torch.tensor([[[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=torch.float64)
    expected = torch.tensor([[b, a, 0], [a, b, a], [0, a, b]], dtype=torch.float64)
    torch.testing.assert_close(blur_keys(rows, 0.5)[0], expected)
    assert blur_keys(torch.zeros(1, 40, 40), 5.0).shape == (1, 40, 40)     # 31 taps, 40 columns kept


def test_feedback_affinity_hand_case():
    """1 x 3, labels [0, 1, 0], std 0.5 (taps [a, b, a]): S0 = same label; 0 <-> 2 crosses label 1 -> decayed by
    exp(-2 / 2); then blurred along the row, relu, rows normalised (+ 1e-8)."""
    a, b = math.exp(-2), 1.0
    a, b = a / (2 * a + b), b / (2 * a + b)
    c = math.exp(-1)
    s1 = torch.tensor([[1, 0, c], [0, 1, 0], [c, 0, 1]], dtype=torch.float64)
    blurred = torch.stack([torch.stack([b * r[0] + a * r[1], a * r[0] + b * r[1] + a * r[2], a * r[1] + b * r[2]])
                           for r in s1])
    expected = blurred / (blurred.sum(1, keepdim=True) + 1e-8)
    votes = torch.tensor([[[0, 1, 0]]])
    torch.testing.assert_close(feedback_affinity(votes, 0.5, dtype=torch.float64)[0], expected)
    undecayed = feedback_affinity(votes, 0.5, check_paths=False, dtype=torch.float64)[0]   # delete_same_entity off
    assert undecayed[0, 2] > expected[0, 2]


# --- options -------------------------------------------------------------------------------------------------------
def test_typed_options_are_checked():
    """The options are the class's typed signature: defaults as the preset states them; a wrong type, another method's
    option or an unknown base refused in one paragraph; rcs_layers beyond the tower refused when it runs."""
    from proxyclip import build_segmentor
    from proxyclip.method.method_options import check_method_kwargs

    preset = yaml.safe_load((REPO_ROOT / "configs" / "model" / "resclip_vitb16.yaml").read_text())["segmentor"]
    assert check_method_kwargs("resclip", None) == {**preset["method_kwargs"], "rcs_weights": (2.0, 0.3),
                                                    "sfr_weights": (2.2, 0.7), "rcs_layers": (5, 6, 7, 8),
                                                    "sfr_pamr_dilations": (8, 16)}
    assert check_method_kwargs("resclip", {"rcs_weights": [2, 0.5]})["rcs_weights"] == (2.0, 0.5)
    absent = dict(clip_pretrained="/nonexistent/absent.bin", clip_quick_gelu=True, clip_mean=[0.5] * 3, clip_std=[0.5] * 3,
                  method="resclip", vfm=None, vfm_pretrained=None, vfm_kwargs=None, vfm_mean=None, vfm_std=None)
    for bad, needle in (({"rcs_weights": "big"}, r"the resclip method's rcs_weights takes"),
                        ({"base": "vanilla"}, r"the resclip method's base takes 'naclip' or 'sclip' or 'clearclip'"),
                        ({"std": 5.0}, r"std is naclip's option"),
                        ({"temp_thd": "high"}, r"temp_thd takes a float")):
        with pytest.raises(ProxyCLIPError, match=needle):
            build_segmentor(TINY_CONFIG, method_kwargs=bad, **absent)
    with pytest.raises(ValueError, match="rcs_layers"):
        build_last_block("resclip", rcs_layers=())
    with pytest.raises(ProxyCLIPError, match=r"method_kwargs \{rcs_layers: \[-1\]\}: rcs_layers must be .*The resclip "
                                             r"method's options are"):   # the method's own value check, one paragraph
        build_segmentor(TINY_CONFIG, method_kwargs={"rcs_layers": [-1]}, **absent)
    torch.manual_seed(0)
    two_blocks = build_clip(TINY_CLIP, None, None)[0].visual.eval()       # 2 blocks: no block 5
    with pytest.raises(ProxyCLIPError, match=r"rcs_layers \(5, 6, 7, 8\) must be blocks before the last of the 2"):
        build_last_block("resclip").dense(Crops(two_blocks, torch.randn(1, 3, 32, 32), torch.randn(3, 32), 40.0))
    with pytest.raises(ProxyCLIPError, match="set the vocabulary first"):
        build_last_block("resclip").dense(Crops(two_blocks, torch.randn(1, 3, 32, 32), None, 40.0))


# --- the CLI on every benchmark --------------------------------------------------------------------------------
def protocol(benchmark):
    return yaml.safe_load((REPO_ROOT / "configs" / "resclip" / f"{benchmark}.yaml").read_text())


def test_protocol_values():
    """The original's per-benchmark values (configs/cfg_*.py; proxyclip/methods/resclip/README.md §8)."""
    table = {  # mode, names, scale, prob_thd, temp_thd, rcs, sfr
        "voc21": ("whole", "sclip/voc21", [2048, 336], 0.1, 0.5, [2.0, 0.3], [2.2, 0.7]),
        "voc20": ("whole", "sclip/voc20", [2048, 336], 0.0, 0.1, [2.0, 0.6], [2.1, 0.6]),
        "context60": ("slide", "context60", [2048, 336], 0.1, 0.3, [2.0, 0.3], [1.8, 0.7]),
        "context59": ("slide", "context59", [2048, 336], 0.0, 0.25, [2.0, 0.4], [1.8, 0.7]),
        "coco_object": ("slide", "sclip/coco_object", [2048, 336], 0.1, 0.11, [2.0, 0.4], [1.8, 0.7]),
        "coco_stuff": ("slide", "coco_stuff", [2048, 336], 0.0, 0.11, [2.0, 0.4], [1.8, 0.7]),
        "cityscapes": ("slide", "city_scapes", [2048, 560], 0.0, 0.1, [2.0, 0.2], [2.1, 0.6]),
        "ade20k": ("slide", "ade20k", [2048, 336], 0.0, 0.25, [2.0, 0.3], [2.1, 0.7]),
    }
    preset = yaml.safe_load((REPO_ROOT / "configs" / "model" / "resclip_vitb16.yaml").read_text())["segmentor"]
    assert (preset["pamr_steps"], preset["pad_multiple"], preset["logit_scale"]) == (0, 1, 40.0)
    assert sorted(p.stem for p in (REPO_ROOT / "configs" / "resclip").glob("*.yaml")) == sorted(BENCHMARKS)
    for name, (mode, names, scale, prob, temp, rcs, sfr) in table.items():
        spec = protocol(name)
        seg, data = spec["model"]["segmentor"]["init_args"], spec["data"]["init_args"]
        assert seg["mode"] == mode and (data["names_file"], data["scale"], data["prob_thd"]) == (names, scale, prob)
        kwargs = seg["method_kwargs"]                         # what the cfg files vary, merged over the preset's
        assert set(kwargs) == {"temp_thd", "rcs_weights", "sfr_weights", "delete_same_entity"}
        assert (kwargs["temp_thd"], kwargs["rcs_weights"], kwargs["sfr_weights"]) == (temp, rcs, sfr), name
        assert kwargs["delete_same_entity"] is True
        assert (data.get("crop_size"), data.get("stride")) == ((None, None) if mode == "whole" else (224, 112))


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_main_runs_every_benchmark_with_its_protocol(benchmark, tmp_path, capsys):
    """`main.py test --config configs/<benchmark>.yaml --model configs/model/tiny_resclip.yaml` (a tiny 12-block CLIP)
    on the fake layout: the CLI adds and names the protocol file, whose values run, and metrics.json records the method
    and its options. Images are resized to a small scale here (a later command-line value wins over the protocol's)."""
    from proxyclip.commands.cli import cli_main

    root = WRITERS[benchmark](tmp_path / "data", n=1)
    out = tmp_path / "out"
    cli = cli_main(["test", "--config", f"configs/{benchmark}.yaml", "--model", "configs/model/tiny_resclip.yaml",
                    "--data.init_args.root", str(root), "--data.init_args.scale", "[80, 40]",
                    "--model.output_dir", str(out), "--trainer.logger", "false"])
    printed = capsys.readouterr()
    assert f"resclip's own {benchmark} values" in printed.out + printed.err
    own = protocol(benchmark)
    seg = cli.model.segmentor
    assert seg.method == "resclip" and type(seg.last_block) is LAST_BLOCKS["resclip"] and seg.pamr_steps == 0
    assert seg.mode == own["model"]["segmentor"]["init_args"]["mode"] and seg.prob_thd == own["data"]["init_args"]["prob_thd"]
    assert cli.datamodule.names_file == own["data"]["init_args"]["names_file"]
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_images"] == 1 and report["config"]["method_protocol"] == f"configs/resclip/{benchmark}.yaml"
    init = report["config"]["model"]["segmentor"]["init_args"]
    assert init["method"] == "resclip"
    recorded = report["method_options"]
    preset = yaml.safe_load((REPO_ROOT / "configs" / "model" / "tiny_resclip.yaml").read_text())["segmentor"]
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in recorded.items()} == \
        {**preset["method_kwargs"], **own["model"]["segmentor"]["init_args"]["method_kwargs"]}   # merged, key by key


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_crops_and_the_feedback_guide_equal_the_original_s(mode, monkeypatch):
    """Numerics "original": CLIP's crops are the original's bit for bit (mmseg's constants; whole image for VOC, 224/112
    windows otherwise, never padded), and SFR's PAMR is guided by that crop itself (clip/model.py:279-281), in fp32."""
    import proxyclip.methods.resclip.block as resclip_module
    from proxyclip import build_segmentor
    from test_numerics import IMAGES, assert_same_crops, captured_inputs, original_clip_input, original_crops

    preset = yaml.safe_load((REPO_ROOT / "configs" / "model" / "tiny_resclip.yaml").read_text())["segmentor"]
    preset.update(crop_size=112, stride=56, crop_batch_size=1, numerics="original", mode=mode)
    torch.manual_seed(0)
    seg = build_segmentor({"segmentor": preset}, class_names=VOCAB).eval()
    guides, real_pamr = [], resclip_module.pamr
    monkeypatch.setattr(resclip_module, "pamr", lambda image, *args: guides.append(image.clone()) or real_pamr(image, *args))
    for image in IMAGES:
        guides.clear()
        seen, _ = captured_inputs(seg, image)
        assert_same_crops(seen["clip"], original_crops(original_clip_input(image), 112, 56, 1, mode))
        assert len(guides) == len(seen["clip"]) and all(torch.equal(g, c) for g, c in zip(guides, seen["clip"]))
        assert all(g.dtype == torch.float32 for g in guides)


@pytest.mark.slow
def test_each_protocol_resolves_over_its_benchmark():
    """`--config configs/<benchmark>.yaml --model configs/model/resclip_vitb16.yaml` resolves (parsed, not run) to every
    value of the protocol file, its method_kwargs merged over the preset's, over the benchmark's dataset."""
    from proxyclip.commands.eval_all import resolved_config
    from test_baselines import _flatten

    for benchmark in BENCHMARKS:
        code, printed, errors = resolved_config(["test", "--config", f"configs/{benchmark}.yaml", "--model",
                                                 "configs/model/resclip_vitb16.yaml"])
        assert code == 0, errors
        config = yaml.safe_load(printed)
        resolved = dict(_flatten(config))
        for key, value in _flatten(protocol(benchmark)):
            assert resolved[key] == value, (benchmark, key)
        assert config["method_protocol"] == f"configs/resclip/{benchmark}.yaml"
        assert config["model"]["segmentor"]["init_args"]["pamr_steps"] == 0
