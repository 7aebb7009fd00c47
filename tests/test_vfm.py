"""VFM adapters (docs/method.md §2) on tiny random models built through the libraries' real code paths."""
from __future__ import annotations


import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from conftest import TINY_VIT, tiny_vfm_kwargs as tiny
from proxyclip.errors import ProxyCLIPError
from proxyclip.method.vfm import VFMAdapter, build_vfm, list_vfms
from proxyclip.method.vfm.registry import get_vfm_entry


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def timm_twin(adapter_model: nn.Module, model_name: str, **kwargs) -> nn.Module:
    """timm's own model with the adapter's weights, for reference computations."""
    ref = timm.create_model(model_name, pretrained=False, **kwargs).eval()
    ref.load_state_dict(adapter_model.state_dict())
    return ref


IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SAM_STATISTICS = (tuple(v / 255 for v in (123.675, 116.28, 103.53)), tuple(v / 255 for v in (58.395, 57.12, 57.375)))
SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_{}.pth"

# Every registered name as users depend on it: name -> (weights: timm tag, or SAM's checkpoint URL; patch; width at
# full size; prefix tokens before the patches (None: not a timm ViT); what the model sees: "crop" at its own size,
# "crop_size" resized to the segmentor's crop, or a fixed side).
REGISTERED = {
    "dino_vits16": ("vit_small_patch16_224.dino", 16, 384, 1, "crop"),
    "dino_vits8": ("vit_small_patch8_224.dino", 8, 384, 1, "crop"),
    "dino_vitb16": ("vit_base_patch16_224.dino", 16, 768, 1, "crop"),
    "dino_vitb8": ("vit_base_patch8_224.dino", 8, 768, 1, "crop"),
    "dinov2_vits14_reg": ("vit_small_patch14_reg4_dinov2.lvd142m", 14, 384, 5, "crop"),
    "dinov2_vitb14_reg": ("vit_base_patch14_reg4_dinov2.lvd142m", 14, 768, 5, "crop"),
    "dinov2_vitl14_reg": ("vit_large_patch14_reg4_dinov2.lvd142m", 14, 1024, 5, "crop"),
    "dinov2_vitg14_reg": ("vit_giant_patch14_reg4_dinov2.lvd142m", 14, 1536, 5, "crop"),
    "dinov3_vits16": ("vit_small_patch16_dinov3.lvd1689m", 16, 384, 5, "crop"),
    "dinov3_vitb16": ("vit_base_patch16_dinov3.lvd1689m", 16, 768, 5, "crop"),
    "dinov3_vitl16": ("vit_large_patch16_dinov3.lvd1689m", 16, 1024, 5, "crop"),
    "mae_vit_base": ("vit_base_patch16_224.mae", 16, 768, 1, "crop_size"),
    "mae_vit_large": ("vit_large_patch16_224.mae", 16, 1024, 1, "crop_size"),
    "mae_vit_huge": ("vit_huge_patch14_224.mae", 14, 1280, 1, "crop_size"),
    "sam_vit_b": (SAM_URL.format("b_01ec64"), 16, 256, None, 1024),
    "sam_vit_l": (SAM_URL.format("l_0b3195"), 16, 256, None, 1024),
    "sam_vit_h": (SAM_URL.format("h_4b8939"), 16, 256, None, 1024),
}


def test_the_registered_names_are_the_documented_ones():
    assert list_vfms() == sorted(REGISTERED)


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_every_registered_vfm_exposes_its_weights_statistics_and_architecture(name):
    weights, patch, width, prefix, sees = REGISTERED[name]
    entry = get_vfm_entry(name)
    assert entry.name == name and entry.description
    if name.startswith("sam_"):
        assert (entry.weights_url, entry.timm_name, entry.pixel_statistics()) == (weights, None, SAM_STATISTICS)
    else:   # timm's pretrained weights and statistics of the tag; `kwargs["model_name"]` is read by the presets' test
        assert (entry.timm_name, entry.kwargs["model_name"], entry.weights_url) == (weights, weights, None)
        cfg = timm.models.get_pretrained_cfg(weights)
        assert entry.pixel_statistics() == IMAGENET == (tuple(cfg.mean), tuple(cfg.std))
    with torch.device("meta"):                 # the full-size architecture, through our own factory, without memory
        vfm = build_vfm(name, pretrained=False)
    assert (vfm.patch_size, vfm.embed_dim) == (patch, width)
    assert getattr(getattr(vfm, "model", None), "num_prefix_tokens", None) == prefix
    assert vfm.follows_crop == (sees == "crop_size")
    assert vfm.input_size == (None if isinstance(sees, str) else (sees, sees))
    assert vfm.min_crop_side() == (patch if isinstance(sees, str) else 1)


def test_family_tables_are_what_they_register():
    """Each family's variants are data; the table's tags, URLs, patches and widths are the pinned ones above."""
    from proxyclip.method.vfm import DINO, DINOV2, DINOV3, MAE, SAM

    timm_tables = {name: (v.timm_name, v.patch, v.width) for f in (DINO, DINOV2, DINOV3, MAE) for name, v in f.variants.items()}
    sam_table = {f"sam_{variant}": (v.url, 16, 256) for variant, v in SAM.variants.items()}
    assert {**timm_tables, **sam_table} == {name: row[:3] for name, row in REGISTERED.items()}
    assert all(get_vfm_entry(name).builder == f.build for f in (DINO, DINOV2, DINOV3, MAE, SAM) for name in f.entries())


@pytest.mark.parametrize("name", list_vfms())
@pytest.mark.parametrize("size", [(112, 112), (112, 168)])
def test_every_registered_vfm_shapes(name, size):
    vfm = build_vfm(name, pretrained=False, model_kwargs=tiny(name))
    assert isinstance(vfm, VFMAdapter)
    assert not vfm.training and not any(p.requires_grad for p in vfm.parameters())
    with torch.no_grad():
        feats = vfm(torch.randn(2, 3, *size), crop_size=112)
    side_h, side_w = vfm.input_size_for(112) or size
    expected = (2, vfm.embed_dim, side_h // vfm.patch_size, side_w // vfm.patch_size)
    assert tuple(feats.shape) == expected
    assert vfm.grid_size(*size, crop_size=112) == expected[2:]
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize("name", ["dino_vits16", "dinov2_vits14_reg", "dinov3_vits16"])
def test_sides_not_multiple_of_patch_floor_the_grid(name):
    vfm = build_vfm(name, pretrained=False, model_kwargs=tiny(name))
    p = vfm.patch_size
    x = torch.randn(1, 3, 4 * p + 5, 6 * p + p - 1)
    with torch.no_grad():
        feats = vfm(x)
        cropped = vfm(x[..., : 4 * p, : 6 * p])           # what the stride-p convolution reads
    assert tuple(feats.shape[-2:]) == (4, 6) == vfm.grid_size(*x.shape[-2:])
    torch.testing.assert_close(feats, cropped)


def test_dino_native_grid_matches_timm_forward_features():
    vfm = build_vfm("dino_vitb8", pretrained=False, model_kwargs=TINY_VIT)
    ref = timm_twin(vfm.model, "vit_base_patch8_224.dino", **TINY_VIT)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = ref.forward_features(x)[:, 1:].transpose(1, 2).reshape(2, 32, 28, 28)
        torch.testing.assert_close(vfm(x), expected)
    # Why the table must be left alone at the native grid: the offset scale factor is not the identity.
    table = ref.pos_embed[0, 1:].reshape(1, 28, 28, 32).permute(0, 3, 1, 2)
    resized = F.interpolate(table, scale_factor=(28.1 / 28, 28.1 / 28), mode="bicubic")
    assert resized.shape == table.shape and not torch.allclose(resized, table, atol=1e-4)


def test_dino_other_grid_uses_offset_scale_factor():
    vfm = build_vfm("dino_vitb8", pretrained=False, model_kwargs=TINY_VIT)
    ref = timm_twin(vfm.model, "vit_base_patch8_224.dino", **TINY_VIT)
    gh, gw, side = 14, 21, 28
    # Independent computation: DINO's interpolate_pos_encoding, written out, put in timm's model for 112x168.
    pos = ref.pos_embed.detach()
    grid = pos[:, 1:].reshape(1, side, side, 32).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((gh + 0.1) / side, (gw + 0.1) / side), mode="bicubic")
    assert grid.shape[-2:] == (gh, gw)
    ref.pos_embed = nn.Parameter(torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, gh * gw, 32)], dim=1))
    ref.patch_embed.set_input_size(img_size=(gh * 8, gw * 8))
    x = torch.randn(2, 3, gh * 8, gw * 8)
    with torch.no_grad():
        expected = ref.forward_features(x)[:, 1:].transpose(1, 2).reshape(2, 32, gh, gw)
        torch.testing.assert_close(vfm(x), expected)


def test_dinov2_matches_timm_dynamic_size_path():
    name = "vit_base_patch14_reg4_dinov2.lvd142m"
    vfm = build_vfm("dinov2_vitb14_reg", pretrained=False, model_kwargs=TINY_VIT)
    assert vfm.model.patch_embed.grid_size == (37, 37)                 # native 518 / 14
    ref = timm_twin(vfm.model, name, dynamic_img_size=True, **TINY_VIT)
    x = torch.randn(2, 3, 112, 168)
    with torch.no_grad():
        expected = ref.forward_features(x)[:, 5:].transpose(1, 2).reshape(2, 32, 8, 12)  # CLS + 4 registers out
        torch.testing.assert_close(vfm(x), expected)


def test_mae_follows_the_crop_with_the_table_resized_by_bicubic_size(tmp_path):
    native = timm.create_model("vit_base_patch16_224.mae", pretrained=False, **TINY_VIT)
    path = tmp_path / "mae_tiny.pth"
    torch.save({"model": native.state_dict()}, path)                  # MAE's own container layout
    vfm = build_vfm("mae_vit_base", pretrained=str(path), model_kwargs=TINY_VIT)
    assert vfm.input_size_for(336) == (336, 336) and vfm.grid_size(200, 300, crop_size=336) == (21, 21)
    # The original: a model built with img_size=336, its table resized once by MAE's interpolate_pos_embed.
    state = native.state_dict()
    table = state["pos_embed"]
    grid = table[:, 1:].reshape(1, 14, 14, 32).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(21, 21), mode="bicubic", align_corners=False)
    state["pos_embed"] = torch.cat([table[:, :1], resized.permute(0, 2, 3, 1).reshape(1, 441, 32)], dim=1)
    ref = timm.create_model("vit_base_patch16_224.mae", pretrained=False, img_size=336, **TINY_VIT).eval()
    ref.load_state_dict(state)
    x = torch.randn(1, 3, 200, 300)                                   # any crop: resized to 336 x 336 first
    with torch.no_grad():
        expected = ref.forward_features(F.interpolate(x, size=(336, 336), mode="bilinear", align_corners=False))
        torch.testing.assert_close(vfm(x, crop_size=336), expected[:, 1:].transpose(1, 2).reshape(1, 32, 21, 21))
    # timm's own resampling (antialiased) would not give MAE's table.
    antialiased = F.interpolate(grid, size=(21, 21), mode="bicubic", align_corners=False, antialias=True)
    assert not torch.allclose(antialiased, resized, atol=1e-4)
    # Final LayerNorm on the patch tokens, eps 1e-6.
    assert isinstance(vfm.model.norm, nn.LayerNorm) and vfm.model.norm.eps == 1e-6
    # At a 224 crop (Cityscapes) the input is not resized, the table is the checkpoint's: timm's own forward.
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(vfm(x, crop_size=224), native.eval().forward_features(x)[:, 1:].transpose(1, 2).reshape(1, 32, 14, 14))
    with pytest.raises(ProxyCLIPError, match="follows the segmentor's crop_size"):
        build_vfm("mae_vit_base", pretrained=False, model_kwargs={**TINY_VIT, "img_size": 336})


def test_dino_checkpoint_round_trip_and_refusal(tmp_path):
    vfm = build_vfm("dino_vits16", pretrained=False, model_kwargs=TINY_VIT)
    path = tmp_path / "dino_tiny.pth"
    torch.save(vfm.model.state_dict(), path)
    loaded = build_vfm("dino_vits16", pretrained=str(path), model_kwargs=TINY_VIT)
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), vfm(x), rtol=0, atol=0)
    deeper = build_vfm("dino_vits16", pretrained=False, model_kwargs={**TINY_VIT, "depth": 2})
    torch.save(deeper.model.state_dict(), tmp_path / "dino_deep.pth")
    with pytest.raises(ProxyCLIPError, match=r"unexpected keys: .*blocks\.1\."):
        build_vfm("dino_vits16", pretrained=str(tmp_path / "dino_deep.pth"), model_kwargs=TINY_VIT)


def test_sam_full_checkpoint_round_trip_and_refusal(tmp_path):
    kwargs = tiny("sam_vit_b")
    vfm = build_vfm("sam_vit_b", pretrained=False, model_kwargs=kwargs)
    state = {f"image_encoder.{k}": v for k, v in vfm.encoder.state_dict().items()}
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 256)     # the rest of a full SAM checkpoint
    torch.save(state, tmp_path / "sam_tiny.pth")
    loaded = build_vfm("sam_vit_b", pretrained=str(tmp_path / "sam_tiny.pth"), model_kwargs=kwargs)
    x = torch.randn(1, 3, 100, 150)
    with torch.no_grad():
        out = loaded(x)
        torch.testing.assert_close(out, vfm(x), rtol=0, atol=0)
        # SAM sees the input bilinearly resized (align_corners=False) to its img_size.
        resized = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
        torch.testing.assert_close(out, vfm.encoder(resized), rtol=0, atol=0)
    shallower = {**kwargs, "depth": 3, "global_attn_indexes": (2,)}
    with pytest.raises(ProxyCLIPError, match=r"missing keys: .*blocks\.2\."):
        build_vfm("sam_vit_b", pretrained=str(tmp_path / "sam_tiny.pth"), model_kwargs=shallower)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ProxyCLIPError, match="dino_vitb8"):
        build_vfm("dino_vitb9", pretrained=False)
