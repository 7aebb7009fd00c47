"""CorrCLIP (proxyclip/methods/corrclip/README.md) against a float64 reference written from the original's code (github
zdk258/CorrCLIP, CorrCLIPv1: corrclip_segmentor.py (S), open_clip/transformer.py (T)) with explicit loops: DINO's
last-block q + k, mask merging (DBSCAN by a breadth-first search), scope reconstruction with the unsegmented-region
rule, the semantic branch's bool attention mask (True = not allowed) through hand-written blocks, the spatial
branch, windows with region masks padded with 10000, the vote; each op on a hand case; the refusals; the CLI on
every benchmark the original defines."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import REPO_ROOT, TINY_CLIP, TINY_CONFIG
from proxyclip.errors import ProxyCLIPError
from test_cass import reference_dino_qkv

VOCAB = ["sky; cloud", "person", "grass", "building; house; tower"]
TINY_CLIP_8 = {**TINY_CLIP, "vision_cfg": {**TINY_CLIP["vision_cfg"], "layers": 8}}          # patch 16, 4 heads
TINY_CLIP_8_P14 = {**TINY_CLIP, "vision_cfg": {**TINY_CLIP["vision_cfg"], "layers": 8, "patch_size": 14}}
TINY_DINO = {"depth": 2, "embed_dim": 32, "num_heads": 2}
OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def tiny_corrclip(clip=TINY_CLIP_8, **overrides):
    from proxyclip import build_segmentor

    torch.manual_seed(0)
    options = {**dict(clip_model=clip, method="corrclip", vfm_kwargs=TINY_DINO, pad_multiple=56, crop_size=112,
                      stride=56, text_cache=False, numerics="original",
                      method_kwargs={"instance_mask_path": "unused"}), **overrides}
    return build_segmentor(TINY_CONFIG, class_names=VOCAB, **options).eval()


def region_image(h, w, seed=0, regions=6):
    """[h, w] int64 ids: 0 (unsegmented) and rectangles 1..regions, later ones painted over earlier ones."""
    g = np.random.default_rng(seed)
    mask = np.zeros((h, w), dtype=np.int64)
    for i in range(1, regions + 1):
        y, x = g.integers(0, h - 8), g.integers(0, w - 8)
        mask[y:y + g.integers(8, h // 2 + 8), x:x + g.integers(8, w // 2 + 8)] = i
    return torch.from_numpy(mask)


# --- references from the original's code ----------------------------------------------------------------------
def reference_dbscan(distance, eps):
    """DBSCAN(min_samples=1, precomputed) as connected components of distance <= eps by a breadth-first search from
    each unlabelled point in order."""
    n = distance.shape[0]
    labels = [-1] * n
    current = 0
    for start in range(n):
        if labels[start] != -1:
            continue
        queue, labels[start] = [start], current
        while queue:
            i = queue.pop(0)
            for j in range(n):
                if labels[j] == -1 and (distance[i, j] <= eps or distance[j, i] <= eps):
                    labels[j] = current
                    queue.append(j)
        current += 1
    return labels


def reference_block(block, x, allowed):
    """open_clip's ResidualAttentionBlock (T:240-246) on x [L, W] with nn.MultiheadAttention's bool mask semantics:
    `allowed` [L, L] False -> -inf before the softmax (S: `~attn_mask`, True = not allowed)."""
    width = x.shape[-1]
    heads = block.attn.num_heads
    d = width // heads
    y = F.layer_norm(x, (width,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
    qkv = y @ block.attn.in_proj_weight.T + block.attn.in_proj_bias
    outs = []
    for head in range(heads):
        q = qkv[:, head * d:(head + 1) * d] * d ** -0.5
        k = qkv[:, width + head * d:width + (head + 1) * d]
        v = qkv[:, 2 * width + head * d:2 * width + (head + 1) * d]
        logits = (q @ k.T).masked_fill(~allowed, float("-inf"))
        outs.append(torch.softmax(logits, dim=-1) @ v)
    x = x + (torch.cat(outs, dim=1) @ block.attn.out_proj.weight.T + block.attn.out_proj.bias)
    z = F.layer_norm(x, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
    return x + block.mlp(z)


def reference_window(seg, img, masks, eps, stats=None):
    """forward_feature (S:97-122) + VisionTransformer.forward (T:506-636) for one padded window img [3, H, W]
    (CLIP-normalised, float32) and its region ids masks [H, W] -> logits [Q, H, W]."""
    visual, dino = seg.clip.visual, seg.vfm.model
    mean, std = torch.tensor(OPENAI_MEAN).view(3, 1, 1), torch.tensor(OPENAI_STD).view(3, 1, 1)
    # S:96 in float32 as the original (then fp16 there, float64 here); CLIP's input float64
    imgs_norm = ((img.float() * std + mean) - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    img = img.double()
    qkv = reference_dino_qkv(dino, imgs_norm[None].double())                       # [3, 1, heads, 1 + N, d]
    qk = (qkv[0] + qkv[1]).transpose(1, 2).reshape(1, qkv.shape[3], -1)[:, 1:]    # S:111-113: q + k, CLS dropped
    dino_feats = F.normalize(qk, dim=-1)                                           # [1, N, C]
    p = dino.patch_embed.patch_size[0]
    feat_shape = (img.shape[-2] // p, img.shape[-1] // p)
    cp = visual.conv1.kernel_size[0]
    token_size = (img.shape[-2] // cp, img.shape[-1] // cp)
    # embedding (T:508-521), the position table resized as T:639-656
    x = visual.conv1(img[None]).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(1, 1, -1), x], dim=1)
    pos = visual.positional_embedding
    if x.shape[1] != pos.shape[0]:
        side = int(math.sqrt(pos.shape[0] - 1))
        grid = F.interpolate(pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2), mode="bicubic",
                             scale_factor=((token_size[0] + 0.1) / side, (token_size[1] + 0.1) / side))
        pos = torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(-1, pos.shape[-1])])
    x = visual.ln_pre(x + pos)[0]                                                  # [1 + n, W]
    num_layers = len(visual.transformer.resblocks)
    num_spatial = {12: 5, 24: 12, 32: 28}.get(num_layers, num_layers - 4)
    similarity = dino_feats[0] @ dino_feats[0].T
    # mask merging (T:547-565)
    m = F.interpolate(masks[None, None].float(), size=feat_shape, mode="nearest").int()[0, 0]
    feats = dino_feats[0].reshape(*feat_shape, -1)
    values = torch.unique(m)
    if stats is not None:
        stats.append({"regions": len(values)})
    if values.shape[0] > 2:
        region_masks = [v == m for v in values]
        inst = F.normalize(torch.stack([feats[r].mean(dim=0) for r in region_masks]), dim=1)[1:]
        sim = inst @ inst.T
        cluster = reference_dbscan((sim.max() - sim).numpy(), eps)
        if stats is not None:
            stats[-1].update(clusters=len(set(cluster)), distance=(sim.max() - sim).numpy())
        for idx, c in enumerate(cluster, start=1):
            m[region_masks[idx]] = c + 10000
    # scope reconstruction (T:567-581)
    region_masks = [(v == m).view(-1) for v in torch.unique(m)]
    equal = torch.zeros_like(similarity).bool()
    for r in region_masks[1:]:
        equal |= torch.outer(r, r)
    r0 = region_masks[0]
    equal |= (r0[None] | r0[:, None]) & (similarity > similarity.mean())
    similarity = similarity.masked_fill(~equal, float("-inf"))
    attn_weights = (similarity * 4).softmax(dim=-1)
    # the semantic branch's mask (T:582-593)
    mt = F.interpolate(m[None, None].float(), size=token_size, mode="nearest").int()[0, 0]
    region_masks = torch.stack([v == mt for v in torch.unique(mt)])
    r = region_masks.shape[0]
    seq = torch.cat([x[:1].repeat(r, 1), x])
    allowed = torch.zeros(seq.shape[0], seq.shape[0], dtype=torch.bool)
    allowed[r:, r:] = True
    allowed[:r, r] = True
    allowed[:r, r + 1:] = region_masks.view(r, -1)
    spatial = []
    for idx, blk in enumerate(visual.transformer.resblocks[:-1]):
        seq = reference_block(blk, seq, allowed)
        if num_layers - 2 - num_spatial <= idx <= num_layers - 3:
            spatial.append(seq[r:])
    blk = visual.transformer.resblocks[-1]
    width = blk.attn.embed_dim
    outs = []
    for tokens in (seq[r:], torch.stack(spatial).mean(0)):                         # main, spatial (T:603-612)
        y = F.layer_norm(tokens, (width,), blk.ln_1.weight, blk.ln_1.bias, blk.ln_1.eps)
        v = y @ blk.attn.in_proj_weight[2 * width:].T + blk.attn.in_proj_bias[2 * width:]
        v = v[1:].T.reshape(1, width, *token_size)
        v = F.interpolate(v, size=feat_shape, mode="bilinear", align_corners=False).flatten(2)[0].T
        outs.append((attn_weights @ v) @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias)
    mct = reference_block(blk, seq, allowed)[:r]                                    # T:615-617
    expand = F.interpolate(region_masks[:, None].double(), size=feat_shape, mode="nearest").flatten(1)
    outs.append(expand.T @ mct)
    main, spat, sem = (visual.ln_post(o) for o in outs)
    out = (main + spat * seg.last_block.alpha + sem * seg.last_block.beta) @ visual.proj
    logits = F.normalize(out, dim=-1) @ seg.text_embeddings().double().T            # S:116-119
    logits = logits.T.reshape(1, -1, *feat_shape)
    return F.interpolate(logits, size=img.shape[-2:], mode="bilinear")[0]


def reference_image(seg, x, mask, out_size, crop, stride, eps, stats=None):
    """predict + forward_slide (S:151-195, 197-208): x [3, h, w] CLIP-normalised, mask [H0, W0] -> [Q, H0, W0]."""
    masks = F.interpolate(mask[None, None].float(), size=x.shape[-2:], mode="nearest").int()
    h, w = x.shape[-2:]
    q = seg.text_embeddings().shape[0]
    preds, count = torch.zeros(1, q, h, w, dtype=torch.float64), torch.zeros(1, 1, h, w, dtype=torch.float64)
    img = x[None]
    for hi in range(max(h - crop + stride - 1, 0) // stride + 1):
        for wi in range(max(w - crop + stride - 1, 0) // stride + 1):
            y1, x1 = hi * stride, wi * stride
            y2, x2 = min(y1 + crop, h), min(x1 + crop, w)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            crop_img, crop_masks = img[:, :, y1:y2, x1:x2], masks[:, :, y1:y2, x1:x2]
            hh, ww = crop_img.shape[2:]
            lr, tb = (56 - ww % 56) % 56, (56 - hh % 56) % 56
            pad = (lr // 2, lr - lr // 2, tb // 2, tb - tb // 2)
            crop_img = F.pad(crop_img, pad)
            crop_masks = F.pad(crop_masks, pad, value=10000)
            logit = reference_window(seg, crop_img[0], crop_masks[0, 0], eps, stats)[None]
            logit = logit[:, :, pad[2]:pad[2] + hh, pad[0]:pad[0] + ww]
            preds += F.pad(logit, (x1, w - x2, y1, h - y2))
            count[:, :, y1:y2, x1:x2] += 1
    return F.interpolate(preds / count, size=out_size, mode="bilinear")[0]


def reference_labels(seg_logit, mask, query_to_class, num_classes, prob_thd):
    """postprocess_result (S:197-217) on [Q, H, W] logits, with synonyms maxed per class (ours: any class)."""
    probs = (seg_logit * 40).softmax(0)
    probs = torch.stack([probs[query_to_class == c].max(0)[0] for c in range(num_classes)])
    seg_pred = probs.argmax(0, keepdim=True)
    seg_pred[probs.max(0, keepdim=True)[0] < prob_thd] = 0
    mask_values = torch.unique(mask)[1:]
    masks = (mask_values[:, None, None] == mask[None]).unsqueeze(1)
    for m in masks:
        seg_pred[m] = torch.mode(seg_pred[m])[0]
    return seg_pred[0]


# --- the tests ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(224, 224), (56, 112), (48, 80)])
def test_timm_dino_query_plus_key_equals_the_vendored_dino(size):
    """`query_plus_key` of the VFM's `last_block_qkv` = q + k of the vendored DINO's last qkv (the hook's output,
    S:104-113), float64."""
    from proxyclip.method.vfm import build_vfm
    from proxyclip.methods.corrclip.ops import query_plus_key

    torch.manual_seed(0)
    vfm = build_vfm("dino_vitb8", False, {"depth": 2, "embed_dim": 32, "num_heads": 2}).double()
    with torch.no_grad():
        torch.nn.init.normal_(vfm.model.pos_embed, std=0.5)
        img = torch.randn(1, 3, *size, dtype=torch.float64)
        q, k, _ = vfm.last_block_qkv(img)
        got = query_plus_key(q, k)
        qkv = reference_dino_qkv(vfm.model, img)
    hook = torch.cat([qkv[:, 0, h] for h in range(2)], dim=-1)       # [3, 1 + N, C]: heads concatenated
    expected = (hook[0] + hook[1])[1:].T.reshape(32, size[0] // 8, size[1] // 8)
    torch.testing.assert_close(got[0], expected, rtol=1e-10, atol=1e-10)


def test_dbscan_is_connected_components_in_order():
    from proxyclip.methods.corrclip.ops import dbscan_single_linkage

    # hand case: 0-2 close, 2-4 close (a chain), 1 and 3 close, 5 alone; eps inclusive
    d = torch.full((6, 6), 1.0)
    d.fill_diagonal_(0)
    for i, j, v in ((0, 2, 0.1), (2, 4, 0.2), (1, 3, 0.15), (4, 5, 0.21)):
        d[i, j] = d[j, i] = v
    assert dbscan_single_linkage(d, 0.2).tolist() == [0, 1, 0, 1, 0, 2]
    assert dbscan_single_linkage(d, 0.1).tolist() == [0, 1, 0, 2, 3, 4]
    assert dbscan_single_linkage(d, 0.21).tolist() == [0, 1, 0, 1, 0, 0]
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        f = F.normalize(torch.randn(12, 3, generator=g), dim=1)
        s = f @ f.T
        dist = s.max() - s
        eps = float(torch.rand(1, generator=g)) * 0.8
        assert dbscan_single_linkage(dist, eps).tolist() == reference_dbscan(dist.numpy(), eps), trial


def test_region_ops_on_hand_cases():
    from proxyclip.methods.corrclip.ops import merge_regions, scope_attention, semantic_attention_mask, spatial_blocks

    # three regions besides the unsegmented 0: 1 and 2 point the same way, 3 elsewhere
    regions = torch.tensor([[0, 1, 1], [2, 2, 3]])
    feats = F.normalize(torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.1], [1.0, 0.05], [0.9, 0.1], [0.0, 1.0]]), dim=1)
    merged = merge_regions(regions, feats, 0.2)
    assert merged.tolist() == [[0, 10000, 10000], [10000, 10000, 10001]]
    assert merge_regions(torch.tensor([[0, 5], [5, 5]]), feats[:4], 0.2).tolist() == [[0, 5], [5, 5]]   # <= 2 ids
    # scope: same segmented region, or a pair touching the unsegmented region above the mean cosine
    f = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0], [0.1, 1.0]]), dim=1)
    ids = torch.tensor([0, 7, 7, 9])
    attn = scope_attention(f, ids, 4.0)
    sim = f @ f.T
    allowed = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    allowed[0] = sim[0] > sim.mean()
    allowed[:, 0] = sim[:, 0] > sim.mean()
    expected = (sim * 4).masked_fill(~allowed, float("-inf")).softmax(-1)
    torch.testing.assert_close(attn, expected)
    assert allowed[0, 0] and not allowed[0, 2] and allowed[1, 2] and not allowed[2, 3]
    # the semantic mask: 2 regions over 3 patches; True = not allowed
    members = torch.tensor([[True, False, True], [False, True, False]])
    mask = semantic_attention_mask(members)
    expected = torch.ones(6, 6, dtype=torch.bool)
    expected[2:, 2:] = False
    expected[0, [2, 3, 5]] = False
    expected[1, [2, 4]] = False
    assert torch.equal(mask, expected)
    assert list(spatial_blocks(12)) == [5, 6, 7, 8, 9] and list(spatial_blocks(24)) == list(range(10, 22))
    assert list(spatial_blocks(32)) == list(range(2, 30)) and list(spatial_blocks(8)) == [2, 3, 4, 5]
    assert list(spatial_blocks(8, 2)) == [4, 5]


def test_vote_on_a_hand_case():
    from proxyclip.methods.corrclip.ops import region_vote

    labels = torch.tensor([[1, 1, 2, 2], [3, 3, 2, 0], [1, 2, 0, 0]])
    regions = torch.tensor([[0, 0, 5, 5], [4, 4, 5, 5], [4, 4, 9, 9]])
    # id 0 (the smallest) untouched; 4: labels 3, 3, 1, 2 -> 3; 5: 2, 2, 2, 0 -> 2; 9: 0, 0 -> 0
    assert region_vote(labels, regions, 4).tolist() == [[1, 1, 2, 2], [3, 3, 2, 2], [3, 3, 0, 0]]
    # a tie (1, 2, 1, 2) goes to the smallest label, as CPU torch.mode
    tie = torch.tensor([[1, 2], [2, 1]])
    assert region_vote(tie, torch.ones(2, 2, dtype=torch.long) * 3, 3).tolist() == [[1, 2], [2, 1]]   # the smallest id
    assert region_vote(torch.tensor([[2, 1, 2, 1, 0]]), torch.tensor([[5, 5, 5, 5, 1]]), 3).tolist() == [[1, 1, 1, 1, 0]]
    assert int(torch.mode(torch.tensor([1, 2, 1, 2]))[0]) == int(torch.tensor([2, 1, 1]).min())


CASES = {"patch16": (TINY_CLIP_8, (100, 150)), "patch14": (TINY_CLIP_8_P14, (120, 100)),
         "wide": (TINY_CLIP_8, (40, 130))}   # windows 56 x 112: DINO 7 x 14, CLIP 3 x 7 (56 / 16 floored)


@pytest.mark.parametrize("case", list(CASES))
def test_corrclip_equals_the_float64_reference(case, tmp_path):
    """The segmentor's logits of one image = predict / forward_slide / the CorrCLIP tower written as loops, float64;
    windows padded (region id 10000 in the padding), some regions merged, others not; then the vote on our logits."""
    clip, size = CASES[case]
    g = torch.Generator().manual_seed(2)
    image = (torch.rand(3, *size, generator=g) * 256).to(torch.uint8)
    out_size = (size[0] + 17, size[1] - 9)                     # the original image's size (the protocol resized it)
    mask = region_image(*out_size, seed=1, regions=7)
    np.savez(tmp_path / "img.npz", instance_mask=mask.numpy().astype(np.int32))
    seg = tiny_corrclip(clip, method_kwargs={"instance_mask_path": str(tmp_path)}).double()
    with torch.no_grad():
        x = seg.clip_normalised(image)
        stats = []
        reference_image(seg, x, mask, out_size, 112, 56, 0.0, stats)
        last = stats[-1]                                       # the last window's regions: a radius that chains some
        n = last["regions"] - 1
        d = np.unique(last["distance"][np.triu_indices(n, 1)])
        eps = min(((a + b) / 2 for a, b in zip(d[:-1], d[1:])),
                  key=lambda e: abs(len(set(reference_dbscan(last["distance"], e))) - n / 2))
        seg.last_block.eps = float(eps)
        stats = []
        expected = reference_image(seg, x, mask, out_size, 112, 56, float(eps), stats)
        assert len(stats) == 2 and 1 < stats[-1]["clusters"] < stats[-1]["regions"] - 1
        got = seg.predict_batch([image], [out_size], [str(tmp_path / "img.jpg")])
        logits = seg([image], [out_size], [str(tmp_path / "img.jpg")])[0]
    assert logits.dtype == torch.float64
    torch.testing.assert_close(logits, expected, rtol=1e-9, atol=1e-11)
    probs, labels = got[0]
    assert torch.equal(labels, reference_labels(logits.double(), mask, seg.query_to_class, 4, seg.prob_thd))


def test_window_equals_the_reference_in_float64(tmp_path):
    """One window, compared at float64 precision (no float32 canvas), with the default eps."""
    from proxyclip.method.last_block.base import ImageSource

    seg = tiny_corrclip().double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 112, 112, generator=g)
    regions = region_image(112, 112, seed=4, regions=5)
    regions[:, 100:] = 10000
    with torch.no_grad():
        got = seg.last_block.window_logits(seg.engine(), x, regions)
        expected = reference_window(seg, x, regions, 0.2)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)
    assert ImageSource(x, (1, 1)).state is None


def test_no_mask_source_is_refused_in_one_paragraph_before_any_model():
    from proxyclip import build_segmentor
    from proxyclip.method.method_options import check_method_kwargs

    for kwargs in ({}, {"instance_mask_path": None, "mask_generator": None}):
        with pytest.raises(ProxyCLIPError) as info:
            build_segmentor(TINY_CONFIG, method="corrclip", method_kwargs=kwargs, clip_model="no-such-model")
        text = str(info.value)
        assert "\n" not in text and "neither a region-mask folder nor a mask generator" in text
        assert "(1) method_kwargs.instance_mask_path" in text and "(2) method_kwargs mask_generator: sam2" in text
        assert "pip install .[sam2]" in text and "(3) `proxyclip-masks`" in text and "data/region_masks/" in text
    with pytest.raises(ProxyCLIPError, match=r"mask_generator takes"):
        check_method_kwargs("corrclip", {"mask_generator": "eomt"})
    with pytest.raises(ProxyCLIPError, match=r"sam2_model is one of sam2_hiera_t, .* not .sam3."):
        check_method_kwargs("corrclip", {"mask_generator": "sam2", "sam2_model": "sam3"})


def test_sam2_generator_without_sam2_is_refused_before_any_model(monkeypatch):
    import sys

    from proxyclip import build_segmentor
    from proxyclip.methods.corrclip.sam2_masks import sam2_missing_message

    monkeypatch.setitem(sys.modules, "sam2.build_sam", None)        # import raises ImportError
    with pytest.raises(ProxyCLIPError) as info:
        build_segmentor(TINY_CONFIG, method="corrclip", method_kwargs={"mask_generator": "sam2"}, clip_model="no-such-model")
    assert str(info.value) == sam2_missing_message()
    with pytest.raises(ProxyCLIPError, match=r"points_per_side must be a positive integer"):
        build_segmentor(TINY_CONFIG, method="corrclip", method_kwargs={"mask_generator": "sam2", "points_per_side": 0})


def test_missing_mask_file_and_library_use_are_refused(tmp_path):
    seg = tiny_corrclip(method_kwargs={"instance_mask_path": str(tmp_path)})
    image = torch.zeros(3, 40, 60, dtype=torch.uint8)
    with pytest.raises(ProxyCLIPError) as info:
        seg.predict_batch([image], None, [str(tmp_path / "photo_001.jpg")])
    text = str(info.value)
    assert f"No region mask for {tmp_path / 'photo_001.jpg'}: {tmp_path / 'photo_001.npz'} does not exist" in text
    assert "(1)" in text and "(2)" in text and "(3)" in text and "\n" not in text
    with pytest.raises(ProxyCLIPError, match=r"came without a file \(library use\): set mask_generator: sam2"):
        seg.segment(image)
    np.savez(tmp_path / "photo_001.npz", instance_mask=np.zeros((39, 60), dtype=np.int64))
    with pytest.raises(ProxyCLIPError, match=r"is \(39, 60\) pixels, but the image's labels are \(40, 60\)"):
        seg.predict_batch([image], None, [str(tmp_path / "photo_001.jpg")])
    np.savez(tmp_path / "photo_001.npz", instance_mask=np.ones((40, 60), dtype=np.int64))
    probs, labels = seg.predict_batch([image], None, [str(tmp_path / "photo_001.jpg")])[0]
    assert labels.shape == (40, 60)


def test_encoders_corrclip_cannot_read_are_refused():
    with pytest.raises(ProxyCLIPError, match=r"q \+ k of the VFM's last attention block"):
        tiny_corrclip(vfm="sam_vit_b", vfm_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2,
                                                   "global_attn_indexes": (1,), "img_size": 256, "out_chans": 32})


# --- presets, protocol files and the CLI ------------------------------------------------------------------------
BENCHMARKS = ("voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff", "cityscapes", "ade20k")
# configs/cfg_*.py: prob_thd, resize scale, slide crop, vocabulary file
PROTOCOL = {
    "voc21": (0.2, [2048, 336], 336, "corrclip/voc21"),
    "voc20": (0.0, [2048, 336], 336, "corrclip/voc20"),
    "context60": (0.15, [2048, 336], 336, "corrclip/context60"),
    "context59": (0.0, [2048, 336], 336, "corrclip/context59"),
    "coco_object": (0.25, [2048, 336], 336, "corrclip/coco_object"),
    "coco_stuff": (0.0, [2048, 336], 336, "corrclip/coco_stuff"),
    "cityscapes": (0.0, [2048, 448], 224, "corrclip/city_scapes"),
    "ade20k": (0.0, [2048, 448], 336, "corrclip/ade20k"),
}
ORIGINAL_NAMES = {"voc21": "voc21", "voc20": "voc20", "context60": "context60", "context59": "context59",
                  "coco_object": "coco_object", "coco_stuff": "coco_stuff", "city_scapes": "city_scapes",
                  "ade20k": "ade20k"}


def test_protocol_files_and_vocabularies_are_the_originals():
    assert sorted(p.stem for p in (REPO_ROOT / "configs" / "corrclip").glob("*.yaml")) == sorted(BENCHMARKS)
    for bench, (prob, scale, crop, names) in PROTOCOL.items():
        own = yaml.safe_load((REPO_ROOT / "configs" / "corrclip" / f"{bench}.yaml").read_text())
        data = own["data"]["init_args"]
        assert "model" not in own or "method_kwargs" not in own["model"]["segmentor"]["init_args"], bench
        assert (data["prob_thd"], data["scale"], data["crop_size"], data["stride"], data["names_file"]) == \
               (prob, scale, crop, 112, names), bench
    folder = REPO_ROOT / "datamodules" / "class_names" / "corrclip"
    lines = {p.stem: p.read_text().splitlines() for p in folder.glob("*.txt")}
    assert sorted(lines) == sorted(ORIGINAL_NAMES.values())
    assert lines["voc21"][15] == "people" and "; bed;" not in lines["coco_object"][0]
    for stem, text in lines.items():
        assert all(", " not in line for line in text), stem
    presets = sorted(p.stem for p in (REPO_ROOT / "configs" / "model").glob("corrclip_*.yaml"))
    assert presets == ["corrclip_openai_vitb16", "corrclip_vitb16", "corrclip_vith14", "corrclip_vitl14"]
    import open_clip
    for stem in presets:
        spec = yaml.safe_load((REPO_ROOT / "configs" / "model" / f"{stem}.yaml").read_text())["segmentor"]
        assert (spec["clip_model"], spec["clip_pretrained"]) in open_clip.list_pretrained(), stem
        assert (spec["method"], spec["vfm"], spec["pad_multiple"], spec["logit_scale"]) == ("corrclip", "dino_vitb8", 56, 40.0)


def tiny_corrclip_preset(folder):
    """configs/model/tiny_corrclip.yaml without its mask source (its tiny SAM 2 needs the optional sam2 extra), as
    corrclip_vitb16.yaml carries none: the caller gives one, mostly a folder of masks (write_masks)."""
    spec = yaml.safe_load((REPO_ROOT / "configs" / "model" / "tiny_corrclip.yaml").read_text())
    del spec["segmentor"]["method_kwargs"]        # all of them the mask source's (tests/test_tiny_presets.py)
    path = folder / "tiny_corrclip.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def write_masks(root, folder):
    """A region mask per image under root (random rectangles at the image's size), as <stem>.npz."""
    from PIL import Image

    folder.mkdir()
    for index, path in enumerate(sorted(p for p in root.rglob("*") if p.suffix in (".jpg", ".png")
                                        and ("JPEGImages" in p.parts or "images" in p.parts or "leftImg8bit" in p.parts))):
        w, h = Image.open(path).size
        np.savez(folder / f"{path.stem}.npz", instance_mask=region_image(h, w, seed=index, regions=4).numpy())


@pytest.mark.parametrize("bench", BENCHMARKS)
def test_each_benchmark_runs_through_main(bench, tmp_path, capsys):
    """`main.py test --config configs/<bench>.yaml --model <the corrclip preset, tiny>` with a folder of region masks
    on the fake layout: the CLI adds configs/corrclip/<bench>.yaml and says so; the run records method and options."""
    from fake_datasets import WRITERS
    from proxyclip.commands.cli import cli_main

    root = WRITERS[bench](tmp_path / "data", n=1)
    write_masks(root, tmp_path / "masks")
    out = tmp_path / "out"
    options = {"instance_mask_path": str(tmp_path / "masks")}
    cli = cli_main(["test", "--config", f"configs/{bench}.yaml", "--model", str(tiny_corrclip_preset(tmp_path)),
                    "--model.segmentor.method_kwargs", json.dumps(options),
                    "--data.init_args.root", str(root), "--model.output_dir", str(out), "--trainer.logger", "false",
                    "--data.init_args.scale", "[400, 60]"])
    printed = capsys.readouterr()
    assert f"corrclip's own {bench} values: --config" in printed.out + printed.err
    seg = cli.model.segmentor
    assert (seg.method, seg.prob_thd, seg.pad_multiple) == ("corrclip", PROTOCOL[bench][0], 56)
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_images"] == 1 and report["config"]["method_protocol"] == f"configs/corrclip/{bench}.yaml"
    assert report["method"] == "corrclip" and report["method_options"]["instance_mask_path"] == str(tmp_path / "masks")
    assert report["method_options"]["eps"] == 0.2 and report["method_options"]["mask_generator"] is None


def test_per_crop_calls_are_refused_naming_the_method_and_what_to_call():
    """CorrCLIP has no patch features without an image's region mask: the segmentor's dense_features / crop_logits
    refuse before any encoder runs, and say to call it on whole images."""
    seg = tiny_corrclip()
    for call in (lambda: seg.dense_features(torch.rand(1, 3, 112, 112)), lambda: seg.crop_logits(torch.rand(1, 3, 112, 112))):
        with pytest.raises(ProxyCLIPError, match=r"The corrclip method computes whole images only .* segmentor\(images, "
                                                 r"out_sizes, paths\) .* predict_batch / segment") as info:
            call()
        assert "\n" not in str(info.value)


def test_the_region_mask_reaches_the_vote_as_typed_state(tmp_path):
    """image_logits returns the region mask it read (`RegionMask`), which the segmentor keeps for the vote."""
    from proxyclip.methods.corrclip.block import RegionMask

    mask = region_image(40, 60, seed=2, regions=4)
    np.savez(tmp_path / "img.npz", instance_mask=mask.numpy().astype(np.int32))
    seg = tiny_corrclip(method_kwargs={"instance_mask_path": str(tmp_path)})
    (source,) = seg.sources([torch.zeros(3, 40, 60, dtype=torch.uint8)], None, [str(tmp_path / "img.jpg")])
    with torch.no_grad():
        seg.image_logits([source])
    assert isinstance(source.state, RegionMask) and torch.equal(source.state.regions, mask)
