"""The proxy-attention CLIP forward against a plainly written float64 re-implementation (loops per crop and head)."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from proxyclip.method.clip_encoder import build_clip
from proxyclip.method.clip_tower import dense_clip_features
from proxyclip.methods.proxyclip.block import ProxyAttention
from conftest import TINY_CLIP


def reference_dense(visual, x, feats, beta, gamma):
    """docs/method.md §2–§3, one crop and one head at a time, float64."""
    visual = copy.deepcopy(visual).double()
    x, feats = x.double(), feats.double()
    p = visual.conv1.kernel_size[0]
    width = visual.conv1.out_channels
    heads = visual.transformer.resblocks[-1].attn.num_heads
    head_dim = width // heads
    outputs = []
    for b in range(x.shape[0]):
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        tokens = F.conv2d(x[b:b + 1, :, :gh * p, :gw * p], visual.conv1.weight, stride=p)[0]   # [W, gh, gw]
        tokens = tokens.reshape(width, -1).T                                                      # [gh*gw, W]
        table = visual.positional_embedding[1:]
        side = int(math.sqrt(table.shape[0]))
        if (gh, gw) != (side, side):
            grid = table.T.reshape(1, width, side, side)
            grid = F.interpolate(grid, scale_factor=((gh + 0.1) / side, (gw + 0.1) / side), mode="bicubic")
            table = grid.reshape(width, -1).T
        seq = torch.cat([visual.class_embedding[None], tokens]) + torch.cat([visual.positional_embedding[:1], table])
        seq = visual.ln_pre(seq)[None]
        for block in visual.transformer.resblocks[:-1]:
            seq = block(seq)
        last = visual.transformer.resblocks[-1]
        y = last.ln_1(seq)[0, 1:]                                                                  # [gh*gw, W]
        f = feats[b]                                                                               # [C, h, w]
        h, w = f.shape[-2:]
        f = f.reshape(f.shape[0], -1)
        f = f / f.norm(dim=0, keepdim=True)
        sim = f.T @ f
        logits = gamma * (sim - beta * sim.mean())
        logits[logits < 0] = float("-inf")
        attn = torch.softmax(logits, dim=-1)
        head_outputs = []
        for head in range(heads):
            rows = slice(2 * width + head * head_dim, 2 * width + (head + 1) * head_dim)
            v = y @ last.attn.in_proj_weight[rows].T + last.attn.in_proj_bias[rows]              # [gh*gw, hd]
            v = v.T.reshape(1, head_dim, gh, gw)
            v = F.interpolate(v, size=(h, w), mode="bilinear", align_corners=False).reshape(head_dim, -1).T
            head_outputs.append(attn @ v)
        o = last.attn.out_proj(torch.cat(head_outputs, dim=1))
        o = visual.ln_post(o) @ visual.proj
        o = o / o.norm(dim=-1, keepdim=True)
        outputs.append(o.T.reshape(-1, h, w))
    return torch.stack(outputs)


@pytest.fixture(scope="module")
def tiny_clip():
    torch.manual_seed(0)
    model, _ = build_clip(TINY_CLIP, None)
    return model


@pytest.mark.parametrize(
    "size, grid",
    [((224, 224), (14, 14)),   # native CLIP grid: positional table untouched
     ((112, 112), (14, 14)),   # VFM grid finer than CLIP's
     ((112, 168), (14, 21)),   # non-square crop
     ((168, 280), (12, 20)),   # non-square, 280 not a multiple of 16 (floor), VFM grid coarser on one side
     ((336, 336), (42, 42))],
)
def test_dense_features_match_reference(tiny_clip, size, grid):
    torch.manual_seed(1)
    x = torch.randn(2, 3, *size)
    feats = torch.randn(2, 8, *grid) + torch.randn(1, 8, 1, 1)   # a shared component makes S's mean non-trivial
    ours = dense_clip_features(tiny_clip.visual, x, ProxyAttention(beta=1.2, gamma=3.0), feats)
    ref = reference_dense(tiny_clip.visual, x, feats, beta=1.2, gamma=3.0)
    assert ours.shape == (2, 32, *grid)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=0)


def test_mean_is_per_image(tiny_clip):
    torch.manual_seed(2)
    x = torch.randn(3, 3, 112, 112)
    feats = torch.randn(3, 8, 14, 14) * torch.tensor([0.8, 1.5, 4.0]).view(3, 1, 1, 1) + torch.randn(3, 8, 1, 1)
    together = dense_clip_features(tiny_clip.visual, x, ProxyAttention(1.2, 3.0), feats)
    alone = torch.cat([dense_clip_features(tiny_clip.visual, x[i:i + 1], ProxyAttention(1.2, 3.0), feats[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
