"""SC-CLIP (proxyclip/methods/scclip/README.md): each op against a hand-computed case, the whole method against a float64 loop
over crops, tokens and heads written from the specification (not from our code), the options refused in one
paragraph, and the method run through main.py's CLI on every benchmark the original defines."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO_ROOT, TINY_CLIP
from fake_datasets import WRITERS
from proxyclip.errors import ProxyCLIPError
from proxyclip.method.clip_encoder import build_clip
from proxyclip.method.last_block import LAST_BLOCKS, Crops, build_last_block
from proxyclip.methods.scclip.ops import aggregate, lof_anomalies, repair, similarity_attention

#: the tiny CLIP with ViT-B/16's 12 blocks, so that SC-CLIP's default block indices (up to 10) exist
TINY_CLIP_12 = {**TINY_CLIP, "vision_cfg": {**TINY_CLIP["vision_cfg"], "layers": 12}}
DEFAULTS = dict(similarity_thd=0.4, pre_adjust_idx=8, post_adjust_idx=3, multi_start_idx=3, multi_end_idx=10, res_cls=0.3,
                n_neighbors=30, contamination=0.05)


# --- the ops, by hand ---------------------------------------------------------------------------------------
def test_lof_hand_case():
    """1-D tokens 0, 1, 2, 3, 10 with 2 neighbours, squared distances. k-distances 4, 1, 1, 4, 64 -> LRD = 2 / kdist
    = 1/2, 2, 2, 1/2, 1/32 (reachability with the token's OWN k-distance); LOF = mean LRD(o) / LRD(p):
    token 0 (neighbours 1, 2): 4; token 1 (0, 2): 0.625; token 2 (1, 3): 0.625; token 3 (2, 1): 4; token 4 (3, 2):
    (16 + 64) / 2 = 40. Sorted 0.625, 0.625, 4, 4, 40."""
    x = torch.tensor([0.0, 1.0, 2.0, 3.0, 10.0]).view(1, 5, 1)
    # contamination 0.2: quantile 0.8 at position 3.2 -> 4 + 0.2 * 36 = 11.2: only token 4
    assert lof_anomalies(x, 2, 0.2)[0].tolist() == [False, False, False, False, True]
    # contamination 0.5: the quantile is 4 exactly; strictly above it: token 4 only, not the two 4s
    assert lof_anomalies(x, 2, 0.5)[0].tolist() == [False, False, False, False, True]
    # contamination 0.6: position 1.6 -> 0.625 + 0.6 * 3.375 = 2.65: tokens 0, 3, 4
    assert lof_anomalies(x, 2, 0.6)[0].tolist() == [True, False, False, True, True]
    assert not lof_anomalies(x, 2, 0.0).any()                 # the maximum itself is never strictly above itself


def test_lof_without_a_token_above_the_quantile_finds_none():
    """Basis vectors: every squared distance 2, every LOF exactly 1, nothing strictly above the quantile (the
    original crashes here, `mean_interpolation` on an empty index list); and the repair then changes nothing."""
    x = torch.eye(40).unsqueeze(0)
    anomalies = lof_anomalies(x, 30, 0.05)
    assert not anomalies.any()
    assert torch.equal(repair(x, anomalies, (5, 8)), x)


def test_lof_is_per_crop():
    """Two crops in one batch find what each finds alone (own neighbours, own quantile)."""
    torch.manual_seed(0)
    a, b = torch.randn(1, 196, 16), 50 * torch.randn(1, 196, 16)
    both = lof_anomalies(torch.cat([a, b]), 30, 0.05)
    assert torch.equal(both, torch.cat([lof_anomalies(a, 30, 0.05), lof_anomalies(b, 30, 0.05)]))
    assert both.sum(dim=1).tolist() == [10, 10]                # 196 scores: the 10 above sorted position 185.25


def test_repair_hand_cases():
    grid = torch.arange(1.0, 10.0).view(1, 9, 1)              # 3 x 3: [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    anomalies = torch.zeros(1, 9, dtype=torch.bool)
    anomalies[0, [0, 4]] = True                                # the corner 1 and the centre 5
    out = repair(grid, anomalies, (3, 3))[0, :, 0]
    # centre: its 8 neighbours but the anomalous corner, (2 + 3 + 4 + 6 + 7 + 8 + 9) / 7; corner: (2 + 4) / 2
    assert out.tolist() == pytest.approx([3.0, 2, 3, 4, 39 / 7, 6, 7, 8, 9])
    # a 2 x 3 grid, row-major: token 5 is row 1, column 2 (value 6); its neighbours 2, 3, 5
    rect = torch.arange(1.0, 7.0).view(1, 6, 1)
    last = torch.zeros(1, 6, dtype=torch.bool)
    last[0, 5] = True
    assert repair(rect, last, (2, 3))[0, :, 0].tolist() == pytest.approx([1, 2, 3, 4, 5, 10 / 3])
    # an anomaly whose neighbours are all anomalies keeps its value
    assert torch.equal(repair(rect[:, :4], torch.ones(1, 4, dtype=torch.bool), (2, 2)), rect[:, :4])


def test_aggregate_and_similarity_attention_hand_cases():
    graph = torch.tensor([[[1.0, 0.5], [0.0, 1.0]]], dtype=torch.float64)
    y = torch.tensor([[[2.0], [4.0]]], dtype=torch.float64)
    expected = torch.tensor([[[4.0 / (1.5 + 1e-6)], [4.0 / (1.0 + 1e-6)]]], dtype=torch.float64)
    torch.testing.assert_close(aggregate(y, graph), expected, rtol=1e-15, atol=0)
    # mean 4.4 / 9; 3 x (S - mean): row 0 -> 1.5333, 0.0333, < 0 (masked); the kept ones differ by 3 x 0.5 = 1.5
    s = torch.tensor([[[1.0, 0.5, 0.1], [0.5, 1.0, 0.1], [0.1, 0.1, 1.0]]], dtype=torch.float64)
    sig = 1 / (1 + math.exp(-1.5))
    expected = torch.tensor([[[sig, 1 - sig, 0], [1 - sig, sig, 0], [0, 0, 1]]], dtype=torch.float64)
    torch.testing.assert_close(similarity_attention(s), expected, rtol=1e-12, atol=1e-15)
    # the mean is the crop's own: a second crop in the batch changes nothing
    other = torch.full((3, 3), 0.9, dtype=torch.float64).fill_diagonal_(1.0)[None]
    both = similarity_attention(torch.cat([s, other]))
    torch.testing.assert_close(both[:1], expected, rtol=1e-12, atol=1e-15)


# --- the whole method against a float64 loop ----------------------------------------------------------------
def reference_lof(tokens, k, contamination):
    """[N, D] -> set of anomalous token indices, point by point (spec §3.3)."""
    n = tokens.shape[0]
    d = ((tokens[:, None] - tokens[None]) ** 2).sum(-1).tolist()
    neighbours = [sorted(range(n), key=lambda o, p=p: d[p][o])[1:k + 1] for p in range(n)]
    lrd = []
    for p in range(n):
        kdist = d[p][neighbours[p][-1]]
        lrd.append(k / (sum(max(d[p][o], kdist) for o in neighbours[p]) / k))
    lof = [sum(lrd[o] / lrd[p] for o in neighbours[p]) / k for p in range(n)]
    ranked = sorted(lof)
    pos = (1 - contamination) * (n - 1)
    lo = math.floor(pos)
    thr = ranked[lo] + (pos - lo) * (ranked[min(lo + 1, n - 1)] - ranked[lo])
    return {p for p in range(n) if lof[p] > thr}


def reference_repair(tokens, anomalies, gh, gw):
    out = tokens.clone()
    for p in anomalies:
        r, c = divmod(p, gw)
        near = [(r + dr) * gw + c + dc for dr in (-1, 0, 1) for dc in (-1, 0, 1)
                if (dr, dc) != (0, 0) and 0 <= r + dr < gh and 0 <= c + dc < gw and (r + dr) * gw + c + dc not in anomalies]
        if near:
            out[p] = tokens[near].mean(0)
    return out


def reference_graph(tokens, beta=None):
    unit = tokens / tokens.norm(dim=-1, keepdim=True)
    s = unit @ unit.T
    return s if beta is None else torch.where(s < beta, torch.zeros_like(s), s)


def reference_aggregate(y, a):
    return torch.stack([(a[i, :, None] * y).sum(0) / (a[i].sum() + 1e-6) for i in range(y.shape[0])])


def reference_attention(block, x, mid):
    """Patch tokens x [N, W] through the last block's attention, head by head, with SC-CLIP's attention (§3.6)."""
    width = x.shape[-1]
    heads = block.attn.num_heads
    d = width // heads
    y = F.layer_norm(x, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
    w_in, b_in = block.attn.in_proj_weight, block.attn.in_proj_bias
    k = y @ w_in[width:2 * width].T + b_in[width:2 * width]
    v = y @ w_in[2 * width:].T + b_in[2 * width:]
    shifted = (mid - mid.mean()) * 3.0
    a_sim = torch.softmax(torch.where(shifted < 0, torch.full_like(shifted, -math.inf), shifted), dim=1)
    outputs = []
    for h in range(heads):
        kh, vh = k[:, h * d:(h + 1) * d], v[:, h * d:(h + 1) * d]
        attn = (a_sim + torch.softmax((kh @ kh.T) * d ** -0.5, dim=1)) / 2
        outputs.append(attn @ vh)
    return torch.cat(outputs, dim=1) @ block.attn.out_proj.weight.T + block.attn.out_proj.bias


def reference_scclip(visual, outputs, o, grid):
    """One crop: outputs[i] = block i's output [L, W] (CLS first) -> [N, E] unit embeddings (spec §3.3-§3.10)."""
    gh, gw = grid
    last = len(visual.transformer.resblocks) - 2
    block = visual.transformer.resblocks[-1]
    cls, x = outputs[last][:1], outputs[last][1:]
    anomalies = reference_lof(x, o["n_neighbors"], o["contamination"])
    assert anomalies, "the case must exercise the repair"
    x = reference_repair(x, anomalies, gh, gw)
    mid = reference_graph(reference_repair(outputs[o["pre_adjust_idx"]][1:], anomalies, gh, gw))
    x = reference_aggregate(x, torch.where(mid < o["similarity_thd"], torch.zeros_like(mid), mid))
    x = reference_attention(block, x, mid) + o["res_cls"] * cls
    after = reference_graph(outputs[o["post_adjust_idx"]][1:], o["similarity_thd"])
    x = reference_aggregate(x, after)
    summed = sum(outputs[i] for i in range(o["multi_start_idx"], o["multi_end_idx"]))
    r = reference_attention(block, summed[1:], mid) + o["res_cls"] * summed[:1]
    x = x + reference_aggregate(r, after)
    return F.normalize(visual.ln_post(x) @ visual.proj, dim=-1)


def tiny_visual_12():
    torch.manual_seed(0)
    model, _ = build_clip(TINY_CLIP_12, None, None)
    return model.visual.double().eval()


@pytest.mark.parametrize("options", [{}, dict(similarity_thd=0.2, pre_adjust_idx=5, post_adjust_idx=1, multi_start_idx=2,
                                              multi_end_idx=7, res_cls=0.5, n_neighbors=12, contamination=0.1)],
                         ids=["defaults", "other-options"])
def test_scclip_equals_the_loop_over_crops_tokens_and_heads(options):
    """open_clip's own forward (hooks take each block's output), then SC-CLIP per crop in float64: equal to
    `dense` on a batch of two crops; each crop's result is its result alone."""
    visual = tiny_visual_12()
    seen = {}
    for index, blk in enumerate(visual.transformer.resblocks[:-1]):
        blk.register_forward_hook(lambda module, args, out, index=index: seen.__setitem__(index, out))
    torch.manual_seed(1)
    crops = torch.randn(2, 3, 224, 224, dtype=torch.float64)
    block = build_last_block("scclip", **options)
    with torch.no_grad():
        visual(crops)
        outputs = {i: (out if visual.transformer.batch_first else out.transpose(0, 1)) for i, out in seen.items()}
        got = block.dense(Crops(visual, crops, None, 40.0))                          # [2, E, 14, 14]
        alone = block.dense(Crops(visual, crops[1:], None, 40.0))
        for c in range(2):
            expected = reference_scclip(visual, {i: out[c] for i, out in outputs.items()}, {**DEFAULTS, **options}, (14, 14))
            torch.testing.assert_close(got[c].flatten(1).T, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(alone[0], got[1], rtol=1e-12, atol=1e-12)


# --- the options --------------------------------------------------------------------------------------------
def test_scclip_options_are_checked():
    """The typed options: a wrong type, a value out of range, an index the tower lacks, each refused in one
    paragraph that names the option and the value."""
    from proxyclip.method.method_options import check_method_kwargs

    assert check_method_kwargs("scclip", None) == DEFAULTS
    assert LAST_BLOCKS["scclip"].needs_vfm is False
    with pytest.raises(ProxyCLIPError, match=r"the scclip method's n_neighbors takes an int, not 'many'.*options are "
                                             r"similarity_thd \(float, default 0.4\)"):
        check_method_kwargs("scclip", {"n_neighbors": "many"})
    with pytest.raises(ProxyCLIPError, match=r"multi_end_idx \(3\) must be above multi_start_idx \(3\)"):
        build_last_block("scclip", multi_end_idx=3)
    with pytest.raises(ProxyCLIPError, match=r"contamination is a share of the tokens, in \[0, 1\], not 1.5"):
        build_last_block("scclip", contamination=1.5)
    with pytest.raises(ProxyCLIPError, match=r"pre_adjust_idx must be >= 0, not -1; n_neighbors must be >= 1, not 0"):
        build_last_block("scclip", pre_adjust_idx=-1, n_neighbors=0)
    torch.manual_seed(0)
    two_blocks = build_clip(TINY_CLIP, None, None)[0].visual.eval()              # the 2-block tiny tower
    with pytest.raises(ProxyCLIPError, match=r"scclip's pre_adjust_idx 8, post_adjust_idx 3, multi_start_idx 3, "
                                             r"multi_end_idx 10: CLIP's image tower has 2 blocks"):
        build_last_block("scclip").dense(Crops(two_blocks, torch.randn(1, 3, 224, 224), None, 40.0))
    block = build_last_block("scclip", pre_adjust_idx=0, post_adjust_idx=0, multi_start_idx=0, multi_end_idx=1)
    with pytest.raises(ProxyCLIPError, match=r"more patch tokens than n_neighbors \(30\) per crop; this crop has 25"):
        block.dense(Crops(two_blocks, torch.randn(1, 3, 80, 80), None, 40.0))


def test_scclip_values_are_refused_before_any_model_or_data(capsys):
    """On the command line a value out of range is refused by the options' check, before CLIP's weights are
    fetched or the data read: one `error:` paragraph."""
    from proxyclip.commands.cli import cli_main

    with pytest.raises(SystemExit) as info:
        cli_main(["test", "--config", "configs/voc21.yaml", "--model", "configs/model/scclip_vitb16.yaml",
                  "--model.segmentor.method_kwargs", "{multi_end_idx: 2}", "--data.init_args.root", "/nonexistent/VOC"])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if "own voc21 values" not in line]
    assert info.value.code == 2 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("error: method_kwargs for the scclip method: multi_end_idx (2) must be above "
                               "multi_start_idx (3)") and "/nonexistent" not in lines[0], lines[0]


# --- the CLI on every benchmark -----------------------------------------------------------------------------
EXPECTED = {   # proxyclip/methods/scclip/README.md §6: logit_scale, prob_thd, area_thd, vocabulary, resize
    "voc21": (50.0, 0.15, 0.1, "sclip/voc21", [2048, 336]),
    "context60": (40.0, 0.15, None, "context60", [2048, 336]),
    "coco_object": (55.0, 0.35, None, "sclip/coco_object", [2048, 336]),
    "voc20": (40.0, 0.0, None, "sclip/voc20", [2048, 336]),
    "context59": (40.0, 0.0, None, "context59", [2048, 336]),
    "coco_stuff": (40.0, 0.0, None, "coco_stuff", [2048, 336]),
    "cityscapes": (40.0, 0.0, None, "city_scapes", [2048, 560]),
    "ade20k": (40.0, 0.0, None, "ade20k", [2048, 336]),
}


def test_scclip_defines_every_benchmark_of_the_original():
    assert sorted(p.stem for p in (REPO_ROOT / "configs" / "scclip").glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("benchmark", list(EXPECTED))
def test_scclip_runs_every_benchmark_through_main(benchmark, tmp_path, capsys):
    """`main.py test --config configs/<benchmark>.yaml --model configs/model/tiny_scclip.yaml` (a tiny random 12-block
    CLIP) on the fake layout: the CLI adds configs/scclip/<benchmark>.yaml and says so; metrics.json records the method."""
    from proxyclip.commands.cli import cli_main

    root = WRITERS[benchmark](tmp_path / "data", n=1)
    out = tmp_path / "out"
    cli = cli_main(["test", "--config", f"configs/{benchmark}.yaml", "--model", "configs/model/tiny_scclip.yaml",
                    "--data.init_args.root", str(root), "--model.output_dir", str(out), "--trainer.logger", "false"])
    printed = capsys.readouterr()
    assert f"scclip's own {benchmark} values: --config " in printed.out + printed.err
    seg, data = cli.model.segmentor, cli.datamodule
    assert seg.method == "scclip" and seg.vfm is None and type(seg.last_block) is LAST_BLOCKS["scclip"]
    logit_scale, prob_thd, area_thd, names, scale = EXPECTED[benchmark]
    assert (seg.logit_scale, seg.prob_thd, seg.area_thd, seg.mode, seg.crop_size, seg.stride, seg.pamr_steps,
            seg.pad_multiple) == (logit_scale, prob_thd, area_thd, "slide", 224, 112, 0, 1)
    assert (data.names_file, list(data.scale)) == (names, scale)
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_images"] == 1
    assert report["config"]["model"]["segmentor"]["init_args"]["method"] == "scclip"
    assert report["method_options"] == DEFAULTS
    assert report["config"]["method_protocol"] == f"configs/scclip/{benchmark}.yaml"
