"""Trident (proxyclip/methods/trident/README.md) against references written from the original's code (github YuHengsss/Trident):
the whole image's logits as trident.py:131-188 computes them (get_trident_seg, get_windowed_imgs, the forked
encoder's last attention, open_clip/transformer.py custom_attn / guidance_attn / get_sam_sim, preprocess_image) in
float64 on tiny random CLIP, DINO and SAM; the SAM refinement (seg_utils/utils.py sam_refinement, skimage's 8-connected
labelling as scipy.ndimage.label with a 3 x 3 structure); each op against a hand case; the options refused in one
paragraph; and the CLI on every benchmark the original defines."""
import json
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from scipy import ndimage
from segment_anything.utils.transforms import ResizeLongestSide

from conftest import REPO_ROOT, TINY_CLIP, TINY_CONFIG, VOCAB
from proxyclip.errors import ProxyCLIPError
from test_cass import reference_dino_forward

TINY_PRESET = yaml.safe_load((REPO_ROOT / "configs" / "model" / "tiny_trident.yaml").read_text())["segmentor"]
TINY_DINO = TINY_PRESET["vfm_kwargs"]                       # {depth: 2, embed_dim: 32, num_heads: 2}
TINY_SAM = TINY_PRESET["method_kwargs"]["sam_kwargs"]       # SAM ViT-B's kind at 128 pixels, its last block global
MMSEG_MEAN, MMSEG_STD = (122.771, 116.746, 104.094), (68.501, 66.632, 70.323)          # trident.py:37-38
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CROP, STRIDE = 112, 48            # a multiple of the original's 56-pixel padding: no window is padded, as at 336


def tiny_trident(segmentor=None, **method_kwargs):
    from proxyclip import build_segmentor

    torch.manual_seed(0)
    options = {"sam_checkpoint": False, "sam_kwargs": TINY_SAM, **method_kwargs}
    geometry = {"crop_size": CROP, "stride": STRIDE, **(segmentor or {})}
    return build_segmentor(TINY_CONFIG, class_names=VOCAB, method="trident", vfm="dino_vitb16", vfm_kwargs=TINY_DINO,
                           text_cache=False, method_kwargs=options, **geometry).eval()


# --- references from the original's code ----------------------------------------------------------------------
def reference_dino(model, img):
    """DINO's get_intermediate_layers(img)[0] (dino vision_transformer.py: prepare_tokens with
    interpolate_pos_encoding, the blocks, norm) on timm's parameters -> patch tokens [B, C, H/p, W/p]."""
    p = model.patch_embed.patch_size[0]
    b, _, w, h = img.shape
    x = reference_dino_forward(model, img)
    return x[:, 1:].reshape(b, w // p, h // p, -1).permute(0, 3, 1, 2)


def reference_clip_tokens(visual, x):
    """open_clip/transformer.py:502-535: embedding (position table resized as :537-555), ln_pre, blocks[:-1] ->
    LND tokens, CLS dropped."""
    p = visual.conv1.kernel_size[0]
    _, _, w, h = x.shape
    t = visual.conv1(x).flatten(2).transpose(1, 2)
    t = torch.cat([visual.class_embedding.to(t.dtype).expand(t.shape[0], 1, -1), t], dim=1)
    pos = visual.positional_embedding
    if t.shape[1] != pos.shape[0]:
        side = int(math.sqrt(pos.shape[0] - 1))
        grid = F.interpolate(pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2), mode="bicubic",
                             scale_factor=((w // p + 0.1) / side, (h // p + 0.1) / side))
        pos = torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(-1, pos.shape[-1])])
    t = visual.ln_pre(t + pos).permute(1, 0, 2)
    first = not getattr(visual.transformer, "batch_first", True)
    t = t if first else t.transpose(0, 1)
    for blk in visual.transformer.resblocks[:-1]:
        t = blk(t)
    t = t if first else t.transpose(0, 1)
    return t[1:], (h // p, w // p)


def reference_custom_attn(attn_layer, x, ex_feats, beta, gamma, token_size):
    """open_clip/transformer.py:557-584, verbatim."""
    num_heads = attn_layer.num_heads
    _, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads
    q, k, v = F.linear(x, attn_layer.in_proj_weight, attn_layer.in_proj_bias).chunk(3, dim=-1)
    v = v.contiguous().view(-1, bsz * num_heads, head_dim).transpose(0, 1)
    B, C, H, W = ex_feats.shape
    q_k = F.normalize(ex_feats.flatten(2, 3), dim=1)
    similarity = torch.einsum("b c m, b c n -> b m n", q_k, q_k)
    similarity = (similarity - torch.mean(similarity) * beta) * gamma
    similarity[similarity < 0.0] = float('-inf')
    mask = similarity.to(v.dtype).unsqueeze(1).repeat(1, num_heads, 1, 1)
    mask = mask.reshape(bsz * num_heads, mask.shape[2], mask.shape[3])
    attn_weights = F.softmax(mask, dim=-1)
    v = v.reshape(bsz * num_heads, token_size[0], token_size[1], head_dim).permute(0, 3, 1, 2)
    v = F.interpolate(v, size=(H, W), mode='bilinear', align_corners=False)
    v = v.permute(0, 2, 3, 1).reshape(bsz * num_heads, H * W, head_dim)
    attn_output = torch.bmm(attn_weights, v)
    attn_output = attn_output.transpose(0, 1).contiguous().view(-1, bsz, embed_dim)
    return attn_layer.out_proj(attn_output)


def reference_get_sam_sim(sam_v, sam_attn, cos_fac, heads, refine_neg_cos=True):
    """open_clip/transformer.py:643-659, verbatim."""
    sam_v = F.normalize(sam_v.flatten(2, 3), dim=-1)
    sam_sim = torch.einsum("b h m c, b h n c -> b h m n", sam_v, sam_v)
    sim_thresh = cos_fac * sam_sim.mean(dim=1, keepdim=True).mean(dim=-1, keepdim=True)
    if not refine_neg_cos:
        sim_thresh = torch.where(sim_thresh < 0.0, 0.6, sim_thresh)
    sim_thresh = torch.where(sim_thresh > 0.9, 0.9, sim_thresh)
    refined_sam_attn = torch.where(sam_sim > sim_thresh, sam_attn, torch.zeros_like(sam_attn)).mean(dim=1)
    similarity = refined_sam_attn / refined_sam_attn.sum(dim=-1, keepdim=True)
    return similarity.unsqueeze(0).repeat(1, heads, 1, 1)


def reference_guidance_attn(attn_layer, x, token_size, win_sizes, dst_coords, cos_fac, sam_attn, sam_v, vfm_token_size,
                            dst_vh, dst_vw, refine_neg_cos):
    """open_clip/transformer.py:586-640, verbatim but for the kwargs."""
    num_heads = attn_layer.num_heads
    _, bsz, embed_dim = x.size()
    head_dim = embed_dim // num_heads
    win_h, win_w = win_sizes
    dst_coords = torch.stack(dst_coords)
    v = x.view(-1, bsz, num_heads, head_dim).permute(1, 2, 0, 3).contiguous()
    v = v.permute(2, 0, 1, 3).flatten(2)
    v_img = v.view(vfm_token_size[0], vfm_token_size[1], bsz, embed_dim).permute(2, 3, 0, 1).contiguous()
    if v_img.shape[-1] % token_size[1] != 0:
        ratio = int(round(vfm_token_size[0] / token_size[0]))
        v_img = F.interpolate(v_img, size=(token_size[0] * ratio, token_size[1] * ratio), mode='bilinear', align_corners=False)
    else:
        ratio = v_img.shape[-1] // token_size[1]
    dst_v = v.new_zeros(1, embed_dim, dst_vh * ratio, dst_vw * ratio)
    count_mat = v.new_zeros(1, 1, dst_vh * ratio, dst_vw * ratio)
    for h_idx in range(win_h):
        for w_idx in range(win_w):
            coord = dst_coords[h_idx * win_w + w_idx]
            dst_v[0, :, coord[0] * ratio:coord[2] * ratio, coord[1] * ratio:coord[3] * ratio] += v_img[h_idx * win_w + w_idx]
            count_mat[:, :, coord[0] * ratio:coord[2] * ratio, coord[1] * ratio:coord[3] * ratio] += 1
    dst_v = dst_v / count_mat
    if type(sam_v) is list:
        outs = []
        halves = dst_v[:, :, :, :dst_v.shape[3] // 2], dst_v[:, :, :, dst_v.shape[3] // 2:]
        for half, sv, sa in zip(halves, sam_v, sam_attn):
            weights = reference_get_sam_sim(sv, sa, cos_fac, num_heads, refine_neg_cos).type_as(v)
            half = F.interpolate(half, size=(sv.shape[2], sv.shape[3]), mode='bilinear', align_corners=False)
            half = half.reshape(1, num_heads, head_dim, -1).permute(0, 1, 3, 2).contiguous()
            outs.append(torch.matmul(weights, half).view(1, num_heads, sv.shape[2], sv.shape[3], head_dim))
        out = torch.cat(outs, dim=-2).flatten(2, 3)
        return out.permute(2, 0, 1, 3).flatten(2).contiguous()
    dst_v = F.interpolate(dst_v, size=(sam_v.shape[2], sam_v.shape[3]), mode='bilinear', align_corners=False)
    attn_weights = reference_get_sam_sim(sam_v, sam_attn, cos_fac, num_heads, refine_neg_cos).type_as(v)
    dst_v = dst_v.view(1, num_heads, head_dim, -1).permute(0, 1, 3, 2).contiguous()
    return torch.matmul(attn_weights, dst_v).permute(2, 0, 1, 3).flatten(2).contiguous()


def reference_sam_feat(sam, image):
    """SamPredictor.set_image + the forked encoder (image_encoder.py:105-115, :226-244) + get_sam_feat
    (trident.py:112-128): the last block's attention and v on the valid grid."""
    x = torch.as_tensor(ResizeLongestSide(sam.image_encoder.img_size).apply_image(image)).permute(2, 0, 1)[None]
    input_size = x.shape[-2:]
    enc = sam.image_encoder
    t = enc.patch_embed(sam.preprocess(x)) + enc.pos_embed
    for blk in enc.blocks[:-1]:
        t = blk(t)
    module = enc.blocks[-1].attn
    y = enc.blocks[-1].norm1(t)
    B, H, W, _ = y.shape
    qkv = module.qkv(y).reshape(B, H * W, 3, module.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * module.num_heads, H * W, -1).unbind(0)
    attn = (q * module.scale) @ k.transpose(-2, -1)
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos
    attn = add_decomposed_rel_pos(attn, q, module.rel_pos_h, module.rel_pos_w, (H, W), (H, W)).softmax(dim=-1)
    v = v.view(B, module.num_heads, H, W, -1)
    vh, vw = input_size[0] // 16, input_size[1] // 16
    hw = enc.img_size // 16                                                # the original's literal 64
    attn = attn.view(1, module.num_heads, hw, hw, hw, hw)[:, :, :vh, :vw, :vh, :vw].flatten(2, 3).flatten(3, 4)
    return attn, v[:, :, :vh, :vw, :], vh, vw


def reference_preprocess_image(image, stride=16, slide_crop=336):
    """seg_utils/utils.py:9-24, verbatim."""
    longer_side = max(image.shape[2:])
    h, w = image.shape[2:]
    if h % stride == 0 and w % stride == 0:
        return image
    dst_longer = (longer_side // stride + 1) * stride if longer_side % stride != 0 else longer_side
    new_h, new_w = int(h * dst_longer / longer_side), int(w * dst_longer / longer_side)
    if new_h % stride != 0: new_h = (new_h // stride + 1) * stride
    if new_w % stride != 0: new_w = (new_w // stride + 1) * stride
    new_h, new_w = max(new_h, slide_crop), max(new_w, slide_crop)
    return F.interpolate(image, (new_h, new_w), mode='bilinear', align_corners=False)


def reference_image_logits(seg, image, path, out_size, o):
    """trident.py:131-188 (get_trident_seg) with get_windowed_imgs (:190-225) and compute_padsize (:296-308)."""
    sam, visual = seg.last_block.sam_model, seg.clip.visual
    stride, CROP, STRIDE = visual.conv1.kernel_size[0], seg.crop_size, seg.stride     # clip_stride: the model name's
    tmp_img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) if path is not None else \
        np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    tmp_h, tmp_w = tmp_img.shape[:2]
    if tmp_h % stride != 0: tmp_h = (tmp_h // stride + 1) * stride
    if tmp_w % stride != 0: tmp_w = (tmp_w // stride + 1) * stride
    tmp_img = cv2.resize(tmp_img, (tmp_w, tmp_h))
    if o.get("split_halves"):
        a1, v1, h1, w1 = reference_sam_feat(sam, np.ascontiguousarray(tmp_img[:, :tmp_w // 2]))
        a2, v2, _, _ = reference_sam_feat(sam, np.ascontiguousarray(tmp_img[:, tmp_w // 2:]))
        sam_attn, sam_v, sam_h, sam_w = [a1, a2], [v1, v2], h1, w1 * 2
    else:
        sam_attn, sam_v, sam_h, sam_w = reference_sam_feat(sam, tmp_img)
    src = ((image.float() - torch.tensor(MMSEG_MEAN).view(3, 1, 1)) / torch.tensor(MMSEG_STD).view(3, 1, 1))[None]
    img = reference_preprocess_image(src, stride, CROP)
    clip_h, clip_w = img.shape[-2] // stride, img.shape[-1] // stride
    h_img, w_img = img.shape[-2:]
    h_grids, w_grids = max(h_img - CROP + STRIDE - 1, 0) // STRIDE + 1, max(w_img - CROP + STRIDE - 1, 0) // STRIDE + 1
    crops, locs = [], []
    for hi in range(h_grids):
        for wi in range(w_grids):
            y2, x2 = min(hi * STRIDE + CROP, h_img), min(wi * STRIDE + CROP, w_img)
            y1, x1 = max(y2 - CROP, 0), max(x2 - CROP, 0)
            crop = img[:, :, y1:y2, x1:x2]
            H, W = crop.shape[2:]
            assert H % 56 == 0 and W % 56 == 0                                # compute_padsize(H, W, 56): no pad
            locs.append(torch.tensor([y1 // stride, x1 // stride, y2 // stride, x2 // stride]))
            crops.append(crop)
    batch = torch.cat(crops).double()
    unnorm = batch * torch.tensor(CLIP_STD, dtype=torch.float64).view(3, 1, 1) + torch.tensor(CLIP_MEAN, dtype=torch.float64).view(3, 1, 1)
    norm = (unnorm - torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)) / torch.tensor(IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)
    vfm_feats = reference_dino(seg.vfm.model, norm)
    x, token_size = reference_clip_tokens(visual, batch)
    blk = visual.transformer.resblocks[-1]
    x = reference_custom_attn(blk.attn, blk.ln_1(x), vfm_feats, o.get("beta", 1.2), o.get("gamma", 3.0), token_size)
    x = reference_guidance_attn(blk.attn, x, token_size, (h_grids, w_grids), locs, o.get("cos_fac", 1.2), sam_attn, sam_v,
                                tuple(vfm_feats.shape[-2:]), clip_h, clip_w, o.get("refine_neg_cos", True))
    x = visual.ln_post(x.permute(1, 0, 2)) @ visual.proj
    x = x / x.norm(dim=-1, keepdim=True)
    logits = x @ seg.text_embeddings().double().T
    logits = logits.permute(0, 2, 1).reshape(-1, logits.shape[-1], sam_h, sam_w)
    return F.interpolate(logits, size=out_size, mode='bilinear')[0]


TINY_CLIP_14 = {**TINY_CLIP, "vision_cfg": {**TINY_CLIP["vision_cfg"], "patch_size": 14}}   # ViT-H/14's patch
CASES = {   # (file size, protocol-resized size, method options, with a file, segmentor options)
    "voc": ((70, 101), (90, 130), {}, True, {}),
    "cityscapes halves": ((64, 150), (80, 190), dict(split_halves=True, cos_fac=3.0, refine_neg_cos=False), True, {}),
    "no file": ((77, 96), (77, 96), dict(beta=1.0, gamma=2.0, cos_fac=0.0), False, {}),
    # CLIP /14 over DINO /16: DINO's 7 x 7 window grid resized to CLIP's 8 x 8 before splicing (transformer.py:604-607)
    "patch 14": ((70, 101), (100, 150), {}, True, dict(clip_model=TINY_CLIP_14, crop_size=112, stride=56)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_trident_equals_the_float64_original(case, tmp_path):
    """image_logits = get_trident_seg written from the original (above), float64, tiny random CLIP, DINO and SAM."""
    file_size, size, o, with_file, geometry = CASES[case]
    seg = tiny_trident(geometry, sam_refinement=False, **o).double()
    seg.numerics = "original"
    g = np.random.default_rng(1)
    picture = g.integers(0, 256, size=(*file_size, 3), dtype=np.uint8)
    path = None
    if with_file:
        path = tmp_path / "image.png"
        Image.fromarray(picture).save(path)
        image = torch.from_numpy(np.array(Image.fromarray(picture).resize(size[::-1], Image.BILINEAR))).permute(2, 0, 1)
    else:
        image = torch.from_numpy(picture).permute(2, 0, 1)
    with torch.no_grad():
        got = seg([image], [file_size], [str(path) if path else None])[0]
        expected = reference_image_logits(seg, image, path, file_size, o)
    assert got.shape == (len(seg.queries), *file_size)
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-7)   # the result is float32


@pytest.mark.parametrize("side", [224, 112, 160])
def test_dino_features_are_get_intermediate_layers(side):
    """Our timm DINO ViT-B/16 adapter = DINO's get_intermediate_layers(x)[0] (normed last block, patch tokens) at its
    native 224 (table untouched) and at other sides (DINO's 0.1-offset bicubic resize), float64."""
    seg = tiny_trident().double()
    x = torch.randn(2, 3, side, side, dtype=torch.float64, generator=torch.Generator().manual_seed(side))
    with torch.no_grad():
        torch.testing.assert_close(seg.vfm(x, crop_size=side), reference_dino(seg.vfm.model, x), rtol=1e-10, atol=1e-12)


# --- hand cases ------------------------------------------------------------------------------------------------
def test_upsized_on_hand_cases():
    from proxyclip.methods.trident.ops import upsized

    x = torch.rand(1, 3, 50, 90)
    assert upsized(x, 16, 64).shape[-2:] == (64, 96)      # 90 -> 96; int(50 * 96 / 90) = 53 -> 64
    assert upsized(x, 16, 112).shape[-2:] == (112, 112)   # each side at least the crop
    y = torch.rand(1, 3, 48, 80)
    assert upsized(y, 16, 336) is y                        # both multiples: returned as it is, even below the crop


def test_sam_similarity_on_a_hand_case():
    """Two heads, three tokens in a row; v chosen so each head's cosines are 1, 0 or -1."""
    from proxyclip.methods.trident.sam import sam_similarity

    v = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]],        # head 0: tokens 0, 1 alike, 2 orthogonal
                      [[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]]])      # head 1: 0, 2 alike, 1 opposite
    v = v.view(1, 2, 1, 3, 2)
    attn = torch.full((1, 2, 3, 3), 1 / 3)
    # cosine means over heads and keys per query: q0 (1+1+0 + 1-1+1)/6 = 1/2, q1 (1+1+0 + -1+1-1)/6 = 1/6,
    # q2 (0+0+1 + 1-1+1)/6 = 1/3; x cos_fac 1.2 -> 0.6, 0.2, 0.4: kept where cosine > threshold
    kept = torch.tensor([[[1, 1, 0], [1, 0, 1]],                    # q0: head 0 keys 0, 1; head 1 keys 0, 2
                         [[1, 1, 0], [0, 1, 0]],                    # q1
                         [[0, 0, 1], [1, 0, 1]]], dtype=torch.float)   # q2
    expected = kept.mean(dim=1) / 3
    expected = expected / expected.sum(dim=-1, keepdim=True)
    torch.testing.assert_close(sam_similarity(v, attn, 1.2, True), expected)
    # cos_fac -3: thresholds -1.5, -0.5, -1 -> 0.6 each without refine_neg_cos; kept where cosine is 1
    ones = torch.tensor([[[1, 1, 0], [1, 0, 1]], [[1, 1, 0], [0, 1, 0]], [[0, 0, 1], [1, 0, 1]]], dtype=torch.float)
    got = sam_similarity(v, attn, -3.0, False)
    torch.testing.assert_close(got, ones.mean(dim=1) / ones.mean(dim=1).sum(dim=-1, keepdim=True))
    # a threshold above 0.9 is capped: cos_fac 10 -> 0.9, only cosine 1 survives (the same as above here)
    torch.testing.assert_close(sam_similarity(v, attn, 10.0, True), got)
    torch.testing.assert_close(sam_similarity(v, attn, 1.2, True),
                               reference_get_sam_sim(v, attn, 1.2, 1)[0, 0])


def test_connected_regions_on_a_hand_case_and_against_scipy():
    from proxyclip.methods.trident.refine import connected_regions

    mask = torch.tensor([[1, 1, 0, 0, 1],
                         [0, 0, 0, 1, 0],
                         [0, 1, 0, 0, 0],
                         [1, 0, 0, 0, 1]], dtype=torch.bool)
    regions = connected_regions(mask)
    expected = [[(0, 0), (0, 1)], [(0, 4), (1, 3)], [(2, 1), (3, 0)], [(3, 4)]]   # diagonals join; raster order
    assert [sorted(map(tuple, torch.nonzero(r).tolist())) for r in regions] == expected
    spiral = torch.tensor([[1, 1, 1, 1, 1],
                           [0, 0, 0, 0, 1],
                           [1, 1, 1, 0, 1],
                           [1, 0, 0, 0, 1],
                           [1, 1, 1, 1, 1]], dtype=torch.bool)                        # one region, long path
    assert len(connected_regions(spiral)) == 1 and connected_regions(spiral)[0].equal(spiral)
    g = torch.Generator().manual_seed(0)
    for density in (0.3, 0.5, 0.7):
        mask = torch.rand(23, 31, generator=g) < density
        labels, n = ndimage.label(mask.numpy(), structure=np.ones((3, 3)))
        regions = connected_regions(mask)
        assert len(regions) == n and all(np.array_equal(r.numpy(), labels == i) for i, r in enumerate(regions, 1))


def test_region_prompts_on_a_hand_case():
    from proxyclip.methods.trident.refine import region_prompts

    region = torch.zeros(5, 6, dtype=torch.bool)
    region[1:4, 2:5] = True
    probs = torch.zeros(5, 6)
    probs[0, 0] = 1.0                           # outside the region: not the point
    probs[2, 3] = probs[3, 2] = 0.7             # a tie: the first in raster order
    box, point = region_prompts(region, probs)
    assert box.tolist() == [2, 1, 4, 3] and point.tolist() == [3, 2]


# --- the refinement against the original's -----------------------------------------------------------------------
def reference_sam_refinement(img_shape, segmentations, seg_logits, num_classes, predictor, coarse_thresh, minimal_area,
                             sam_mask_coff, sam_iou_thresh):
    """seg_utils/utils.py:27-196 (split_connected_regions, map_refinement_coarse, map_failed_regions,
    sam_refinement) with skimage's measure.label(connectivity=2) as scipy.ndimage.label(structure 3 x 3) and
    torchvision's masks_to_boxes written out; the labels it returns."""
    down = 2
    dh, dw = seg_logits.shape[-2] // down, seg_logits.shape[-1] // down
    seg_down = F.interpolate(segmentations.unsqueeze(0).float(), [dh, dw], mode='nearest').squeeze(0).long()
    logits_down = F.interpolate(seg_logits.unsqueeze(0), [dh, dw], mode='bilinear', align_corners=False).squeeze(0)
    if coarse_thresh > 0:
        seg_down[logits_down.max(0, keepdim=True)[0] < coarse_thresh] = num_classes
        cls_pred = F.one_hot(seg_down.squeeze(0), num_classes=num_classes + 1).permute(2, 0, 1).float()
        split_last = False
    else:
        cls_pred = F.one_hot(seg_down.squeeze(0), num_classes=num_classes).permute(2, 0, 1).float()
        split_last = True
    segmentation = cls_pred.numpy()
    C = segmentation.shape[0]
    regions, boxes, points = {}, {}, {}
    for c in range(C):
        if not split_last and c == C - 1: continue
        regions[c], points[c], boxes[c] = [], [], []
        class_logit = logits_down[c]
        if class_logit.max() < coarse_thresh: continue
        labeled, n = ndimage.label(segmentation[c], structure=np.ones((3, 3)))
        for r in range(1, n + 1):
            region_mask = (labeled == r).astype(np.uint8)
            if region_mask.sum() < minimal_area: continue
            max_pos = torch.argmax(class_logit * torch.tensor(region_mask))
            points[c].append(torch.tensor([max_pos % class_logit.size(1), max_pos // class_logit.size(1)]))
            regions[c].append(region_mask)
        if len(regions[c]):
            regions[c] = torch.from_numpy(np.stack(regions[c]))
            ys = [torch.nonzero(m, as_tuple=True)[0] for m in regions[c]]
            xs = [torch.nonzero(m, as_tuple=True)[1] for m in regions[c]]
            boxes[c] = torch.stack([torch.stack([x.min(), y.min(), x.max(), y.max()]) for x, y in zip(xs, ys)]).float()
    cls_masks, cls_logits = [], []
    for i in range(num_classes):
        tmp_r, tmp_b, tmp_p = regions.get(i, []), boxes.get(i, []), points.get(i, [])
        if isinstance(tmp_r, list) and tmp_r == []: continue
        r = logits_down[i].unsqueeze(0)
        new_h, new_w = predictor.transform.get_preprocess_shape(img_shape[0], img_shape[1], 256 * TINY_SAM["img_size"] // 1024)
        side = 256 * TINY_SAM["img_size"] // 1024
        r = F.interpolate(r.unsqueeze(0), [new_h, new_w], mode="bilinear", align_corners=False).squeeze(0)
        r = F.pad(r, (0, side - new_w, 0, side - new_h), mode='constant', value=0)
        r = torch.where(r > coarse_thresh, sam_mask_coff * r, torch.tensor(0.0)).float()
        b = predictor.transform.apply_boxes_torch(tmp_b.long(), [dh, dw]).float()
        p = predictor.transform.apply_coords_torch(torch.stack(tmp_p).long(), [dh, dw]).unsqueeze(1)
        mask, score, logit = predictor.predict_torch(point_coords=p.float(), point_labels=torch.ones([p.shape[0], 1]),
                                                     boxes=b, mask_input=r, multimask_output=False)
        valid = (score > sam_iou_thresh).squeeze(-1)
        if valid.sum() == 0:
            boxes[i] = []
            continue
        cls_masks.append(mask[valid]); cls_logits.append(logit[valid])
        boxes[i] = boxes[i][valid]
    if not cls_logits:
        return segmentations[0]
    logits = predictor.model.postprocess_masks(torch.cat(cls_logits), predictor.input_size, predictor.original_size)
    masks = torch.cat(cls_masks)
    if logits.shape[-1] != img_shape[1] or logits.shape[-2] != img_shape[0]:
        logits = F.interpolate(logits, img_shape, mode='bilinear', align_corners=False)
        masks = logits > predictor.model.mask_threshold
    refined = torch.zeros([len(boxes), *img_shape])
    cumsum, sig = 0, logits.sigmoid()
    for i in range(len(boxes)):
        if isinstance(boxes[i], list): continue
        n = boxes[i].shape[0]
        refined[i] = (sig[cumsum:cumsum + n, 0] * seg_logits[i]).max(dim=0).values * masks[cumsum:cumsum + n, 0].sum(dim=0).bool()
        cumsum += n
    out = refined.argmax(0, keepdim=True)
    return torch.where(refined.sum(dim=0, keepdim=True) == 0, segmentations, out)[0]


def blob_probs(h, w):
    """[4, h, w]: blobs of classes 1 and 2, one of class 3 too small for minimal_area 9 at half size, a patch below
    coarse_thresh 0.2 (uncertain)."""
    probs = torch.full((4, h, w), 0.1)
    probs[1, 4:20, 4:30] = 0.8
    probs[1, 30:44, 40:60] = 0.7
    probs[2, 24:40, 6:26] = 0.6
    probs[3, 2:6, 50:54] = 0.9
    probs[0, 40:48, 0:10] = 0.15
    return probs + 0.01 * torch.rand(4, h, w, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("iou_thresh", [-100.0, 0.0, 100.0])
def test_refinement_equals_the_originals(iou_thresh):
    """Blobs of three classes with probabilities, one under coarse_thresh, one too small; SAM random (its IoU
    scores straddle 0: some masks kept, some not)."""
    from proxyclip.methods.trident.refine import sam_refinement

    seg = tiny_trident()
    predictor = seg.last_block._predictor
    g = np.random.default_rng(0)
    predictor.set_image(g.integers(0, 256, size=(48, 64, 3), dtype=np.uint8))
    h, w, c = 48, 64, 4
    probs = blob_probs(h, w)
    labels = probs.argmax(0)
    with torch.no_grad():
        got = sam_refinement(labels, probs, predictor, (h, w), 0.2, 9, 0.005, iou_thresh)
        expected = reference_sam_refinement((h, w), labels[None], probs, c, predictor, 0.2, 9, 0.005, iou_thresh)
    assert torch.equal(got, expected)
    if iou_thresh == 100.0:
        assert torch.equal(got, labels)
    if iou_thresh == -100.0:
        assert not torch.equal(got, labels)


def test_refine_labels_uses_each_images_own_sam_state():
    """predict_batch computes every image's logits before deciding any: each image's refinement must see its own
    SAM features (kept in its ImageSource's state), not the last image's."""
    from proxyclip.methods.trident.refine import sam_refinement

    seg = tiny_trident({"pad_multiple": 1}, sam_iou_thresh=-100.0, minimal_area=9)   # 48 x 64: windows below the crop
    block = seg.last_block
    g = torch.Generator().manual_seed(0)
    a, b = ((torch.rand(3, 48, 64, generator=g) * 255).to(torch.uint8) for _ in range(2))
    first, second = seg.sources([a, b])
    with torch.no_grad():
        first.state = block.image_logits(seg.engine(), first).state     # as the segmentor keeps it
        second.state = block.image_logits(seg.engine(), second).state   # the predictor now holds b's features
        probs = blob_probs(48, 64)
        labels = probs.argmax(0)
        got = block.refine_labels(labels, probs, first)
        block._predictor.set_image(np.ascontiguousarray(a.permute(1, 2, 0).numpy()))
        expected = sam_refinement(labels, probs, block._predictor, (48, 64), 0.2, 9, 0.005, -100.0)
    assert torch.equal(got, expected) and not torch.equal(got, labels)
    assert first.state is None                                # released once used
    assert torch.equal(block.refine_labels(labels, probs, first), labels)   # nothing kept: nothing refined
    unrefined = tiny_trident(sam_refinement=False)
    assert torch.equal(unrefined.last_block.refine_labels(labels, probs, second), labels)


def test_options_are_refused_in_one_paragraph():
    from proxyclip import build_segmentor

    for bad, words in (({"sam": "vit_x"}, "sam is vit_b"), ({"minimal_area": -1}, "minimal_area"),
                       ({"beta": "high"}, "beta"), ({"pamr": 1}, "pamr")):
        with pytest.raises(ProxyCLIPError) as err:
            build_segmentor(TINY_CONFIG, class_names=VOCAB, method="trident", vfm_pretrained=False, method_kwargs=bad)
        assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ProxyCLIPError, match="must be global"):
        tiny_trident(sam_kwargs={**TINY_SAM, "global_attn_indexes": [0]})


# --- presets, protocol files and the CLI ---------------------------------------------------------------------------
BASE = dict(beta=1.2, gamma=3.0, cos_fac=1.2, refine_neg_cos=True, sam="vit_b", sam_checkpoint=True, sam_kwargs=None,
            sam_refinement=True, coarse_thresh=0.2, minimal_area=225, sam_mask_coff=0.005, sam_iou_thresh=0.8,
            split_halves=False)
PROTOCOL = {   # benchmark: (scale's short side, prob_thd, stride, method options that differ from the base config)
    "voc21": (448, 0.2, 224, dict(coarse_thresh=0.2)),
    "voc20": (336, 0.0, 112, dict(coarse_thresh=0.2, cos_fac=0.0)),
    "context60": (576, 0.15, 224, dict(coarse_thresh=0.15)),
    "context59": (576, 0.0, 224, dict(coarse_thresh=0.15)),
    "coco_object": (448, 0.25, 224, dict(coarse_thresh=0.25)),
    "coco_stuff": (448, 0.0, 224, dict(coarse_thresh=0.05)),
    "cityscapes": (688, 0.0, 224, dict(cos_fac=3.0, refine_neg_cos=False, coarse_thresh=0.1, split_halves=True)),
    "ade20k": (576, 0.0, 224, dict(refine_neg_cos=False, coarse_thresh=0.05)),
    "pc459": (448, 0.0, 224, {}),
    "ade847": (448, 0.0, 224, {}),
}


def test_presets_and_protocol_files_are_the_originals():
    from proxyclip.method.method_options import check_method_kwargs

    assert sorted(p.stem for p in (REPO_ROOT / "configs" / "trident").glob("*.yaml")) == sorted(PROTOCOL)
    for name, clip in (("trident_vitb16", ("ViT-B-16", "openai", True)), ("trident_vith14", ("ViT-H-14", "laion2b_s32b_b79k", False))):
        preset = yaml.safe_load((REPO_ROOT / "configs" / "model" / f"{name}.yaml").read_text())["segmentor"]
        assert preset["method_kwargs"] == check_method_kwargs("trident", {}) == BASE         # every default, stated
        assert (preset["clip_model"], preset["clip_pretrained"], preset["clip_quick_gelu"]) == clip
        assert (preset["vfm"], preset["pad_multiple"], preset["pamr_steps"], preset["logit_scale"]) == ("dino_vitb16", 56, 0, 40.0)
    for bench, (short, prob, stride, own) in PROTOCOL.items():
        spec = yaml.safe_load((REPO_ROOT / "configs" / "trident" / f"{bench}.yaml").read_text())
        seg, data = spec["model"]["segmentor"]["init_args"], spec["data"]["init_args"]
        per_benchmark = ("cos_fac", "refine_neg_cos", "coarse_thresh", "split_halves")   # what the cfg files vary
        assert seg["method_kwargs"] == {key: {**BASE, **own}[key] for key in per_benchmark}, bench
        assert {**BASE, **seg["method_kwargs"]} == {**BASE, **own}, bench             # merged over the preset's
        assert (data["scale"], data["prob_thd"], data["crop_size"], data["stride"]) == ([2048, short], prob, 336, stride)


@pytest.mark.parametrize("bench", [pytest.param(b, marks=pytest.mark.slow) if b == "ade847" else b for b in PROTOCOL])
def test_each_benchmark_runs_through_main(bench, tmp_path, capsys):
    """`main.py test --config configs/<bench>.yaml --model configs/model/tiny_trident.yaml` on the fake layout: the CLI
    adds configs/trident/<bench>.yaml and says so; its values merge over the preset's, whose tiny random SAM stays,
    and the run records them."""
    from fake_datasets import WRITERS
    from proxyclip.commands.cli import cli_main

    root = WRITERS[bench](tmp_path / "data", n=1)
    out = tmp_path / "out"
    short, prob, stride, own = PROTOCOL[bench]
    options = {**BASE, **own, "sam_checkpoint": False, "sam_kwargs": TINY_SAM}
    cli = cli_main(["test", "--config", f"configs/{bench}.yaml", "--model", "configs/model/tiny_trident.yaml",
                    "--data.init_args.root", str(root), "--model.output_dir", str(out), "--trainer.logger", "false"])
    printed = capsys.readouterr()
    assert f"trident's own {bench} values: --config" in printed.out + printed.err
    seg = cli.model.segmentor
    assert (seg.method, seg.prob_thd, seg.crop_size, seg.stride) == ("trident", prob, 336, stride)
    assert seg.method_options == options
    report = json.loads((out / "metrics.json").read_text())
    assert report["num_images"] == 1
    assert report["config"]["method_protocol"] == f"configs/trident/{bench}.yaml"
    assert report["method"] == "trident" and report["method_options"] == options


@pytest.mark.subprocess
def test_weights_list_names_sam(tmp_path):
    """`proxyclip-weights list configs/model/trident_vitb16.yaml` names CLIP's, DINO ViT-B/16's and SAM's sources;
    run.json's provenance records SAM's."""
    from proxyclip.commands.weights import load_model_spec, weights_provenance
    from test_weights import run_weights

    result = run_weights(tmp_path, "list", "configs/model/trident_vitb16.yaml")
    assert result.returncode == 1, result.stderr[-2000:]              # nothing is cached in these private caches
    assert "vit_base_patch16_224.dino" in result.stdout and "sam_vit_b_01ec64.pth" in result.stdout
    spec = load_model_spec(REPO_ROOT / "configs" / "model" / "trident_vitb16.yaml")
    assert weights_provenance(spec)["sam"] == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    spec["method_kwargs"] = {**spec["method_kwargs"], "sam_checkpoint": False}
    assert weights_provenance(spec)["sam"] == "random"


def test_a_window_pad_multiple_would_pad_is_refused():
    """Trident never pads its windows (padded windows cannot be spliced; the original fails there): pad_multiple either
    holds for the windows or the image is refused in one paragraph that names pad_multiple 1."""
    seg = tiny_trident()                                   # pad_multiple 56 (the presets'), crop 112
    image = (torch.rand(3, 48, 64, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    with pytest.raises(ProxyCLIPError, match=r"Trident does not pad its windows: a \(48, 64\) window is no multiple of "
                                             r"pad_multiple 56.*pad_multiple 1"):
        seg.segment(image)
    assert tiny_trident({"pad_multiple": 1}).segment(image).shape == (48, 64)


def test_per_crop_calls_are_refused_naming_the_method_and_what_to_call():
    """Trident has no per-crop features (its windows share one mean, SAM's attention spans the image): the segmentor's
    dense_features / crop_logits refuse before any encoder runs, and say to call it on whole images."""
    seg = tiny_trident()
    for call in (lambda: seg.dense_features(torch.rand(1, 3, CROP, CROP)), lambda: seg.crop_logits(torch.rand(1, 3, CROP, CROP))):
        with pytest.raises(ProxyCLIPError, match=r"The trident method computes whole images only .* segmentor\(images, "
                                                 r"out_sizes, paths\) .* predict_batch / segment") as info:
            call()
        assert "\n" not in str(info.value)


def test_the_method_gets_the_engine_not_the_segmentor():
    """image_logits receives a frozen `Engine` (what a method reads) and returns its logits with a typed state."""
    import dataclasses

    from proxyclip.method.engine import Engine
    from proxyclip.methods.trident.block import SamState

    seg = tiny_trident({"pad_multiple": 1})                  # 48 x 64: windows below the crop, unpadded
    engine = seg.engine()
    assert isinstance(engine, Engine) and engine.visual is seg.clip.visual and engine.vfm is seg.vfm
    assert (engine.geometry.crop_size, engine.geometry.stride, engine.method) == (CROP, STRIDE, "trident")
    with pytest.raises(dataclasses.FrozenInstanceError):
        engine.text = None
    (source,) = seg.sources([(torch.rand(3, 48, 64) * 255).to(torch.uint8)], None, None)
    with torch.no_grad():
        whole = seg.last_block.image_logits(engine, source)
    assert whole.logits.shape == (len(seg.queries), 48, 64) and isinstance(whole.state, SamState)
    assert whole.state.read_size == (48, 64)
