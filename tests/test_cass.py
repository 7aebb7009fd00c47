"""CASS (proxyclip/methods/cass/README.md) against references written from the original's code (github MICV-yonsei/CASS at
228ecdd): DINO's last-block keys (dino/vision_transformer.py), the VFM input (cass_segmentor.py:78-81, 180-181,
clip/model.py:107-108, dino/dino_attention.py:78-86), the whole method as a float64 loop over crops and heads, each
op against a hand-computed case, the options refused in one paragraph, and the CLI on every benchmark it defines."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from torchvision import transforms

from conftest import REPO_ROOT, TINY_CLIP, TINY_CONFIG, VOCAB
from proxyclip.errors import ProxyCLIPError

TINY_CLIP_12 = {**TINY_CLIP, "vision_cfg": {**TINY_CLIP["vision_cfg"], "layers": 12}}   # 4 heads of 16
# the shipped tiny preset's DINO: CLIP's width and heads (64, 4 of 16), which CASS pairs
TINY_DINO = yaml.safe_load((REPO_ROOT / "configs" / "model" / "tiny_cass.yaml").read_text())["segmentor"]["vfm_kwargs"]
MMSEG_MEAN, MMSEG_STD = (122.771, 116.746, 104.094), (68.501, 66.632, 70.323)          # cass_segmentor.py:35


def tiny_cass(**overrides):
    from proxyclip import build_segmentor

    torch.manual_seed(0)
    options = {**dict(clip_model=TINY_CLIP_12, method="cass", vfm_kwargs=TINY_DINO, pad_multiple=1, crop_size=224,
                      stride=112, text_cache=False, method_kwargs={}), **overrides}
    return build_segmentor(TINY_CONFIG, class_names=VOCAB, **options).eval()


# --- references from the original's code ----------------------------------------------------------------------
def reference_dino_forward(model, img, last_qkv=False):
    """The vendored DINO's forward (dino/vision_transformer.py:199-210, 80-116, 177-197: prepare_tokens with
    interpolate_pos_encoding, the blocks, norm) on timm's parameters (same names), in the input's dtype -> the normed
    tokens [B, 1 + n, C] (get_intermediate_layers' last), or with last_qkv the last block's qkv [3, B, heads, 1 + n, d]
    (get_intermediate_feat's)."""
    p = model.patch_embed.patch_size[0]
    b, _, w, h = img.shape
    x = F.conv2d(img, model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=p).flatten(2).transpose(1, 2)
    x = torch.cat([model.cls_token.expand(b, -1, -1), x], dim=1)
    pos, n_table = model.pos_embed, model.pos_embed.shape[1] - 1
    if not (x.shape[1] - 1 == n_table and w == h):
        side = int(math.sqrt(n_table))
        grid = F.interpolate(pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2), mode="bicubic",
                             scale_factor=((w // p + 0.1) / side, (h // p + 0.1) / side))
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])], dim=1)
    x = x + pos
    for index, blk in enumerate(model.blocks):
        c = x.shape[-1]
        heads = blk.attn.num_heads
        y = F.layer_norm(x, (c,), blk.norm1.weight, blk.norm1.bias, 1e-6)
        qkv = (y @ blk.attn.qkv.weight.T + blk.attn.qkv.bias).reshape(b, -1, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        if last_qkv and index == len(model.blocks) - 1:
            return qkv
        attn = torch.softmax(qkv[0] @ qkv[1].transpose(-2, -1) * (c // heads) ** -0.5, dim=-1)
        x = x + ((attn @ qkv[2]).transpose(1, 2).reshape(b, -1, c) @ blk.attn.proj.weight.T + blk.attn.proj.bias)
        z = F.layer_norm(x, (c,), blk.norm2.weight, blk.norm2.bias, 1e-6)
        x = x + (F.gelu(z @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias) @ blk.mlp.fc2.weight.T + blk.mlp.fc2.bias)
    return F.layer_norm(x, (x.shape[-1],), model.norm.weight, model.norm.bias, 1e-6)


def reference_dino_qkv(model, img):
    """The last block's qkv [3, B, heads, 1 + n, d] (the vendored DINO's get_intermediate_feat)."""
    return reference_dino_forward(model, img, last_qkv=True)


def reference_dino_keys(model, img):
    """[B, 3, H, W] -> [heads, d, H/p, W/p] as clip/model.py:315-333 reshapes `qkv[1, :, :, 1:, :]` (B = 1)."""
    p = model.patch_embed.patch_size[0]
    qkv = reference_dino_qkv(model, img)
    key = qkv[1, :, :, 1:, :].squeeze(0).permute(0, 2, 1)
    return key.reshape(key.shape[0], key.shape[1], img.shape[-2] // p, img.shape[-1] // p)


def reference_vfm_pixels(x):
    """The original's steps on one CLIP-normalised crop x [3, h, w] float32 -> DINO's input [1, 3, m', m']."""
    inv_normalize = transforms.Normalize(mean=[-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.255],
                                         std=[1 / 0.229, 1 / 0.224, 1 / 0.255])
    inv = inv_normalize(x.clone()).permute(1, 2, 0).numpy() * 255
    pil = Image.fromarray(inv.astype("uint8"))
    side = min(x.shape[-2:])
    pil = pil.resize((side, side))
    img = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])(pil)
    return img[:, :img.shape[1] - img.shape[1] % 8, :img.shape[2] - img.shape[2] % 8][None]


def clip_normalised(image):
    """mmseg's SegDataPreProcessor (numerics original): uint8 [3, h, w] -> float32."""
    return (image.float() - torch.tensor(MMSEG_MEAN).view(3, 1, 1)) / torch.tensor(MMSEG_STD).view(3, 1, 1)


def reference_tokens(visual, x, stop):
    """clip/model.py:120-134: embedding (position table resized as :161-178 when T != 197), ln_pre, blocks[:stop]
    (open_clip's own) -> [L, W] for one image x [3, H, W]."""
    p = visual.conv1.kernel_size[0]
    w, h = x.shape[-2:]
    t = visual.conv1(x[None]).flatten(2).transpose(1, 2)
    t = torch.cat([visual.class_embedding.to(t.dtype).expand(1, 1, -1), t], dim=1)
    pos = visual.positional_embedding
    if t.shape[1] != pos.shape[0]:
        side = int(math.sqrt(pos.shape[0] - 1))
        grid = F.interpolate(pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2), mode="bicubic",
                             scale_factor=((w // p + 0.1) / side, (h // p + 0.1) / side), align_corners=False,
                             recompute_scale_factor=False)
        pos = torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(-1, pos.shape[-1])])
    t = visual.ln_pre(t + pos)
    first = not getattr(visual.transformer, "batch_first", True)
    t = t.transpose(0, 1) if first else t
    for blk in visual.transformer.resblocks[:stop]:
        t = blk(t)
    return (t.transpose(0, 1) if first else t)[0]


def reference_crop(seg, x, image_x, options):
    """forward_feature (cass_segmentor.py:176-212) and custom_attn / spectral (clip/model.py:240-481) for one crop
    x [3, h, w] float32, head by head, in float64 -> [Q, h, w]."""
    visual = seg.clip.visual
    dino = seg.vfm.model
    tokens = reference_tokens(visual, x.double(), 11)                              # [1 + N, W]
    gh, gw = x.shape[-2] // 16, x.shape[-1] // 16
    n = gh * gw
    block = visual.transformer.resblocks[-1]
    first = not getattr(visual.transformer, "batch_first", True)
    whole_last = block(tokens[:, None] if first else tokens[None])
    whole_last = whole_last[:, 0] if first else whole_last[0]
    width = tokens.shape[-1]
    heads, d = block.attn.num_heads, width // block.attn.num_heads
    s = d ** -0.5
    y = F.layer_norm(tokens, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
    wi, bi = block.attn.in_proj_weight, block.attn.in_proj_bias
    k = (y @ wi[width:2 * width].T + bi[width:2 * width])[1:]
    v = (y @ wi[2 * width:].T + bi[2 * width:])[1:]
    # DINO's keys of CASS's pixels, bilinear to CLIP's grid, range-matched to CLIP's keys (:324-351)
    key = reference_dino_keys(dino, reference_vfm_pixels(x).double())                 # [H, d, gh', gw']
    kd = F.interpolate(key, size=(gh, gw), mode="bilinear", align_corners=False).reshape(heads, d, n).permute(0, 2, 1)
    kd = (kd - kd.min()) / (kd.max() - kd.min()) * (k.max() - k.min()) + k.min()
    wc = torch.stack([k[:, i * d:(i + 1) * d] @ k[:, i * d:(i + 1) * d].T * s for i in range(heads)])
    wd = torch.stack([kd[i] @ kd[i].T * s for i in range(heads)])
    spec = []
    for mats in (wd, wc):
        vals = [np.sort(np.linalg.eigvalsh(m.numpy()))[::-1][:20] for m in mats]
        spec.append([v / np.linalg.norm(v) for v in vals])
    cost = np.zeros((heads, heads), dtype=np.float32)
    for i in range(heads):
        for j in range(heads):
            a, c = spec[0][i] / np.abs(spec[0][i]).sum(), spec[1][j] / np.abs(spec[1][j]).sum()
            cost[i, j] = 1 - np.abs(np.sort(a) - np.sort(c)).sum()
    rows, cols = linear_sum_assignment(cost)
    gauss = torch.tensor([[math.exp(-((p // gw - q // gw) ** 2 + (p % gw - q % gw) ** 2) / (2 * 5.0 ** 2))
                           for q in range(n)] for p in range(n)], dtype=torch.float64)
    outs = []
    if options["seed"] is not None:                    # None: go on with the stream as it stands (the original's)
        torch.manual_seed(options["seed"])
    for idx in range(heads):
        i, j = rows[idx], cols[idx]
        w_d = np.float32(1) - cost[i, j]
        u, sv, vv = torch.svd_lowrank(wd[j], q=10, niter=2)
        if options["stretch"]:
            sv = (sv - sv.min()) / (sv.max() - sv.min()) * (1.5 * sv.max() - 0.5 * sv.min()) + 0.5 * sv.min()
        r = u @ torch.diag(sv) @ vv.T
        r.fill_diagonal_(0)
        r = (r - r.min()) / (r.max() - r.min()) * (wc[i].max() - wc[i].min()) + wc[i].min()
        wdx = float(np.float32(w_d) * np.float32(10))
        attn = torch.softmax((wdx * r + wc[i]) / float(np.float32(wdx) + np.float32(1)) + gauss, dim=-1)
        outs.append(attn @ v[:, idx * d:(idx + 1) * d])
    out = torch.cat(outs, dim=1) @ block.attn.out_proj.weight.T + block.attn.out_proj.bias
    f = F.normalize(visual.ln_post(out) @ visual.proj, dim=-1)                       # [N, E]
    if options["global"] == "crop":
        g_vec = visual.ln_post(whole_last[0]) @ visual.proj
    else:
        g_vec = visual.ln_post(reference_tokens(visual, image_x.double(), None)[0]) @ visual.proj
    text = seg.text_embeddings().double()
    g = F.normalize(g_vec, dim=-1) @ text.T                                          # [Q]
    # hierarchical_clustering (:98-106): cosine distances, Ward, fcluster
    q = text.shape[0]
    unit = text / text.norm(dim=1, keepdim=True)
    dist = np.array([[0.0 if a == b else min(max(1 - float(unit[a] @ unit[b]), 0), 2) for b in range(q)] for a in range(q)])
    condensed = np.array([dist[a, b] for a in range(q) for b in range(a + 1, q)])
    clusters = fcluster(linkage(condensed, method="ward"), t=options["h_threshold"], criterion="distance") - 1
    adjusted = text.clone()
    for cid in range(len(set(clusters))):
        members = np.where(clusters == cid)[0]
        best = int(members[np.argmax(g.numpy()[members])])
        t = F.normalize(text[best], dim=0)
        top = torch.topk(f @ t, 2).indices
        mv = F.normalize(f[top].mean(0), dim=0)
        adjusted[best] = F.normalize((1 - options["mvw"]) * t + options["mvw"] * mv, dim=0)
    logits = (1 - options["gsw"]) * (f @ adjusted.T) + options["gsw"] * g[None]          # [N, Q]
    logits = logits.T.reshape(1, q, gh, gw)
    return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)[0]


# --- the tests ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(224, 224), (96, 96), (48, 80)], ids=["native", "square", "rectangular"])
def test_timm_dino_keys_equal_the_vendored_dino(size):
    """Our timm DINO's last-block keys (the k of `last_block_qkv`, what CASS reads) = the vendored DINO's qkv[1]
    without CLS, float64; its q and v are the vendored qkv[0] and qkv[2] laid out the same way."""
    from proxyclip.method.vfm import build_vfm

    torch.manual_seed(0)
    vfm = build_vfm("dino_vitb8", False, {"depth": 2, "embed_dim": 32, "num_heads": 2}).double()
    with torch.no_grad():
        torch.nn.init.normal_(vfm.model.pos_embed, std=0.5)      # a table that matters
        img = torch.randn(1, 3, *size, dtype=torch.float64)
        q, got, v = vfm.last_block_qkv(img)
        expected = reference_dino_keys(vfm.model, img)
        qkv = reference_dino_qkv(vfm.model, img)
    assert got.shape == q.shape == v.shape == (1, 2, 16, size[0] // 8, size[1] // 8)
    torch.testing.assert_close(got[0], expected, rtol=1e-10, atol=1e-10)
    for part, ours in ((0, q), (2, v)):
        torch.testing.assert_close(ours[0], qkv[part, 0, :, 1:].transpose(1, 2).reshape(expected.shape),
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("size", [(224, 224), (100, 140), (90, 61)], ids=["square", "wide", "tall"])
def test_vfm_pixels_are_the_originals(size):
    """cass_vfm_pixels = torchvision's Normalize with the 0.255 typo, numpy x 255, uint8, PIL's square resize,
    ToTensor, Normalize, the crop to a multiple of 8: bit for bit, on CLIP's input of a real 8-bit image."""
    from proxyclip.methods.cass.ops import cass_vfm_pixels

    g = torch.Generator().manual_seed(1)
    image = (torch.rand(3, *size, generator=g) * 256).to(torch.uint8)
    x = clip_normalised(image)
    got = cass_vfm_pixels(x[None], torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1),
                          torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1))
    expected = reference_vfm_pixels(x)
    side = min(size)
    assert got.shape == (1, 3, side, side)
    assert torch.equal(got[..., :side // 8 * 8, :side // 8 * 8], expected)


CASES = {   # (mode, image size, options): slide with the whole image's CLS and the stretch; whole, the image's own CLS
    "slide-image": ("slide", (240, 300), dict(gsw=0.3, mvw=0.5, stretch=True, global_="image")),
    "whole-crop": ("whole", (100, 140), dict(gsw=0.2, mvw=0.3, stretch=False, global_="crop")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cass_equals_the_float64_loop_over_crops_and_heads(case):
    """The segmentor's logits for one image = the original's forward_slide / whole-image path written as a loop over
    windows and heads (reference_crop), in float64, with the same seeded SVD draws per crop."""
    mode, size, o = CASES[case]
    seg = tiny_cass(mode=mode, numerics="original", method_kwargs=dict(
        global_semantics_weight=o["gsw"], mean_vector_weight=o["mvw"], stretch_singular_values=o["stretch"],
        global_vector=o["global_"], seed=3)).double()
    text = seg.text_embeddings()
    q = text.shape[0]
    unit = F.normalize(text, dim=1)
    heights = linkage(np.clip((1 - unit @ unit.T).numpy(), 0, 2)[np.triu_indices(q, 1)], method="ward")[:, 2]
    threshold = float((heights[1] + heights[2]) / 2)          # some queries share a cluster, not all
    seg.last_block.h_threshold = threshold
    options = dict(gsw=o["gsw"], mvw=o["mvw"], stretch=o["stretch"], global_=o["global_"], seed=3, h_threshold=threshold)
    options["global"] = options.pop("global_")
    g = torch.Generator().manual_seed(2)
    image = (torch.rand(3, *size, generator=g) * 256).to(torch.uint8)
    with torch.no_grad():
        got = seg([image])[0]
        x = clip_normalised(image)
        h, w = size
        canvas, count = torch.zeros(q, h, w, dtype=torch.float64), torch.zeros(1, h, w, dtype=torch.float64)
        windows = [(0, h, 0, w)]
        if mode == "slide":                                                    # cass_segmentor.py:226-238
            windows = []
            for hi in range(max(h - 224 + 111, 0) // 112 + 1):
                for wi in range(max(w - 224 + 111, 0) // 112 + 1):
                    y2, x2 = min(hi * 112 + 224, h), min(wi * 112 + 224, w)
                    windows.append((max(y2 - 224, 0), y2, max(x2 - 224, 0), x2))
        for y1, y2, x1, x2 in windows:
            expected = reference_crop(seg, x[:, y1:y2, x1:x2], x, options)
            canvas[:, y1:y2, x1:x2] += expected
            count[:, y1:y2, x1:x2] += 1
        crop = seg.crop_logits(x[None, :, y1:y2, x1:x2], [x])[0]                 # the last window, in float64
        torch.testing.assert_close(crop, expected, rtol=1e-9, atol=1e-11)
    assert len(set(seg.last_block.clusters(text).tolist())) not in (1, q)
    torch.testing.assert_close(got.double(), canvas / count, rtol=1e-6, atol=1e-7)   # the canvas is float32


def test_spectral_ops_on_hand_cases():
    from proxyclip.methods.cass.ops import matching_cost, range_match, spectrum, stretch

    # [1, 4] -> [0.5, 6]: s' = (s - 1) / 3 * (6 - 0.5) + 0.5; 2 -> 1/3 * 5.5 + 0.5
    torch.testing.assert_close(stretch(torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)),
                               torch.tensor([6.0, 5.5 / 3 + 0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(range_match(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([-1.0, 3.0])),
                               torch.tensor([-1.0, 1.0, 3.0]))
    sym = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 3.0]]], dtype=torch.float64)
    torch.testing.assert_close(spectrum(sym), torch.tensor([[2.0, 1.0], [3.0, 0.0]], dtype=torch.float64)
                               / torch.tensor([[5 ** 0.5], [3.0]], dtype=torch.float64))
    # spectra (2, 1) and (1, 1): L1-normalised (2/3, 1/3) and (1/2, 1/2); sorted |diff| sum = 1/6 + 1/6
    a = torch.tensor([[2.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    expected = torch.tensor([[1.0, 1 - 1 / 3], [1 - 1 / 3, 1.0]], dtype=torch.float32)
    torch.testing.assert_close(matching_cost(a, a), expected)


def test_text_clusters_and_adjustment_on_hand_cases():
    from proxyclip.methods.cass.ops import adjust_text, text_clusters

    # two near-identical directions and one orthogonal: one merge below 0.1, none at 0
    text = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.99, 0.141, 0.0], [0.0, 0.0, 1.0]]), dim=1)
    assert text_clusters(text, 0.1).tolist() == [0, 0, 1]
    assert text_clusters(text, 0.0).tolist() == [0, 1, 2]
    assert text_clusters(text[:1], 0.5).tolist() == [0]
    patches = F.normalize(torch.tensor([[[1.0, 0.0, 0.2], [1.0, 1.0, 0.0], [0.0, 1.0, 0.1], [0.0, 0.0, -1.0]]]), dim=-1)
    similarity = torch.tensor([[0.1, 0.3, 0.2]])         # cluster 0 picks query 1; cluster 1 is query 2
    out = adjust_text(text, torch.tensor([0, 0, 1]), patches, similarity, alpha=0.5)
    torch.testing.assert_close(out[0, 0], text[0])       # not its cluster's choice: unchanged
    t1 = text[1]
    best = patches[0][(patches[0] @ t1).topk(2).indices]
    torch.testing.assert_close(out[0, 1], F.normalize(0.5 * t1 + 0.5 * F.normalize(best.mean(0), dim=0), dim=0))
    t2 = text[2]                                          # its best two: patches 0 and 2
    assert sorted((patches[0] @ t2).topk(2).indices.tolist()) == [0, 2]
    best = patches[0][(patches[0] @ t2).topk(2).indices]
    torch.testing.assert_close(out[0, 2], F.normalize(0.5 * t2 + 0.5 * F.normalize(best.mean(0), dim=0), dim=0))


def test_options_are_refused_in_one_paragraph():
    from proxyclip.method.method_options import check_method_kwargs

    defaults = check_method_kwargs("cass", {})
    assert defaults == dict(global_semantics_weight=0.0, mean_vector_weight=0.0, h_threshold=0.0,
                            stretch_singular_values=False, global_vector="image", gaussian_std=5.0, seed=0,
                            svd_draws="per_crop")
    with pytest.raises(ProxyCLIPError, match=r"the cass method's global_vector takes 'image' or 'crop', not 'whole'\. "
                                             r"The cass method's options are global_semantics_weight \(float"):
        check_method_kwargs("cass", {"global_vector": "whole"})
    with pytest.raises(ProxyCLIPError, match=r"beta is an option of proxyclip, trident and corrclip"):
        check_method_kwargs("cass", {"beta": 1.0})


def test_encoders_cass_cannot_pair_are_refused():
    with pytest.raises(ProxyCLIPError, match=r"CLIP has 4 heads of 16, the VFM 2 of 32"):
        tiny_cass(vfm_kwargs={"depth": 1, "embed_dim": 64, "num_heads": 2})
    with pytest.raises(ProxyCLIPError, match=r"does not give: use a timm ViT VFM"):
        tiny_cass(vfm="dinov3_vits16", vfm_kwargs={"depth": 1, "embed_dim": 64, "num_heads": 4})
    assert tiny_cass().vfm is not None                      # dino_vitb8, the default


def test_missing_scipy_is_one_paragraph(monkeypatch):
    import sys

    from proxyclip.method.last_block import build_last_block

    monkeypatch.setitem(sys.modules, "scipy.optimize", None)     # import raises ImportError
    with pytest.raises(ProxyCLIPError, match=r"needs scipy .* `pip install 'proxyclip\[cass\]'`"):
        build_last_block("cass")


def test_svd_draws_are_seeded_and_leave_the_global_generator_alone():
    seg = tiny_cass()
    image = (torch.rand(3, 224, 224) * 255).to(torch.uint8)
    state = torch.random.get_rng_state()
    with torch.no_grad():
        a, b = seg([image])[0], seg([image])[0]
    assert torch.equal(a, b) and torch.equal(torch.random.get_rng_state(), state)
    seg.last_block.seed = 1
    with torch.no_grad():
        assert not torch.equal(seg([image])[0], a)


# --- presets, protocol files and the CLI ------------------------------------------------------------------------
BENCHMARKS = ("voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff", "cityscapes", "ade20k")
# configs/cfg_*.py (proxyclip/methods/cass/README.md): mode, prob_thd, gsw, mvw, h_threshold, stretch, global vector, scale
PROTOCOL = {
    "voc21": ("whole", 0.1, 0.1, 0.03, 0.10, True, "crop", [2048, 336]),
    "voc20": ("slide", 0.0, 0.4, 0.02, 0.10, False, "image", [2048, 336]),
    "context60": ("slide", 0.1, 0.25, 0.04, 0.09, True, "image", [2048, 336]),
    "context59": ("slide", 0.0, 0.25, 0.04, 0.09, True, "image", [2048, 336]),
    "coco_object": ("slide", 0.1, 0.25, 0.01, 0.10, True, "image", [2048, 336]),
    "coco_stuff": ("slide", 0.0, 0.2, 0.02, 0.02, True, "image", [2048, 336]),
    "cityscapes": ("slide", 0.0, 0.1, 0.03, 0.14, False, "crop", [2048, 560]),
    "ade20k": ("slide", 0.0, 0.3, 0.05, 0.06, True, "image", [2048, 336]),
}


def test_protocol_files_are_every_benchmark_of_the_original():
    assert sorted(p.stem for p in (REPO_ROOT / "configs" / "cass").glob("*.yaml")) == sorted(BENCHMARKS)
    preset = yaml.safe_load((REPO_ROOT / "configs" / "model" / "cass_vitb16.yaml").read_text())["segmentor"]
    from proxyclip.method.method_options import check_method_kwargs

    assert preset["method_kwargs"] == check_method_kwargs("cass", {})          # every default, stated
    assert (preset["vfm"], preset["pad_multiple"], preset["pamr_steps"], preset["logit_scale"]) == ("dino_vitb8", 1, 0, 40.0)
    for bench, (mode, prob, gsw, mvw, h, stretch, glob, scale) in PROTOCOL.items():
        own = yaml.safe_load((REPO_ROOT / "configs" / "cass" / f"{bench}.yaml").read_text())
        seg, data = own["model"]["segmentor"]["init_args"], own["data"]["init_args"]
        assert seg["method_kwargs"] == dict(global_semantics_weight=gsw, mean_vector_weight=mvw, h_threshold=h,
                                            stretch_singular_values=stretch, global_vector=glob), bench   # per benchmark
        assert (seg["mode"], data["prob_thd"], data["scale"]) == (mode, prob, scale), bench
        assert mode == "whole" or (data["crop_size"], data["stride"]) == (224, 112), bench


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_each_benchmark_runs_through_main(bench, tmp_path, capsys):
    """`main.py test --config configs/<bench>.yaml --model configs/model/tiny_cass.yaml` on the fake layout: the CLI
    adds configs/cass/<bench>.yaml and says so, and the run records the method and its options. Images resized small
    (the last --data.init_args.scale wins over the protocol's) to keep it fast."""
    from fake_datasets import WRITERS
    from proxyclip.commands.cli import cli_main

    root = WRITERS[bench](tmp_path / "data", n=1)
    out = tmp_path / "out"
    cli = cli_main(["test", "--config", f"configs/{bench}.yaml", "--model", "configs/model/tiny_cass.yaml",
                    "--data.init_args.root", str(root), "--model.output_dir", str(out), "--trainer.logger", "false",
                    "--data.init_args.scale", "[400, 230]"])
    printed = capsys.readouterr()
    assert f"cass's own {bench} values: --config" in printed.out + printed.err
    mode, prob, gsw, mvw, h, stretch, glob, _ = PROTOCOL[bench]
    seg = cli.model.segmentor
    assert (seg.method, seg.mode, seg.prob_thd, seg.pamr_steps, seg.pad_multiple) == ("cass", mode, prob, 0, 1)
    options = dict(global_semantics_weight=gsw, mean_vector_weight=mvw, h_threshold=h, stretch_singular_values=stretch,
                   global_vector=glob, gaussian_std=5.0, seed=0, svd_draws="per_crop")
    assert seg.method_options == options
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_images"] == 1
    assert report["config"]["method_protocol"] == f"configs/cass/{bench}.yaml"
    segmentor = report["config"]["model"]["segmentor"]["init_args"]
    assert segmentor["method"] == "cass" and segmentor["method_kwargs"] == options
    assert report["method"] == "cass" and report["method_options"] == options
