"""Every preset of configs/model/ built at its real size, with random weights, through the real loading code.

Only the download is replaced: a fake Hugging Face hub and a fake URL fetch hand out a file that holds the
architecture's own random state dict, in the format the real source serves (open_clip's and timm's
`.safetensors` on the hub, SAM's full `.pth` from Meta's URL); open_clip, timm, torch.hub and our loaders do
the rest. Asserted per component: what the original builds (the activation the tag's weights were trained
with, widths, patch sizes, prefix tokens, LayerNorm eps, the position-table grid of 336 and 224 crops, the
feature grids, the output dimension, the pixel statistics the weights were trained with, which every preset
states) and that the weights in the model are the file's. Each component is built once and run forward once,
whichever presets share it.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import open_clip
import pytest
import safetensors.torch
import timm
import torch
from huggingface_hub.utils import EntryNotFoundError
from segment_anything import sam_model_registry
from torch import nn

from conftest import REPO_ROOT
from proxyclip.method.clip_encoder import build_clip, clip_activation
from proxyclip.method.clip_tower import dense_clip_features
from proxyclip.method.last_block import Crops, build_last_block
from proxyclip.methods.proxyclip.block import ProxyAttention
from proxyclip.method.pixel_statistics import clip_statistics, vfm_statistics
from proxyclip.method.pos_embed import resize_pos_embed_offset
from proxyclip.method.vfm import build_vfm
from proxyclip.method.vfm.registry import get_vfm_entry
from proxyclip.commands.weights import load_model_spec

PRESETS = sorted(p for p in (REPO_ROOT / "configs" / "model").glob("*.yaml") if not p.stem.startswith("tiny_"))   # random

# What the original builds (open_clip 2.24's OpenAI loader: QuickGELU; LAION's ViT-H-14: GELU).
CLIPS = {
    ("ViT-B-16", "openai"): dict(activation="QuickGELU", width=768, layers=12, patch=16, native=14, out=512),
    ("ViT-L-14", "openai"): dict(activation="QuickGELU", width=1024, layers=24, patch=14, native=16, out=768),
    ("ViT-H-14", "laion2b_s32b_b79k"): dict(activation="GELU", width=1280, layers=32, patch=14, native=16, out=1024),
    ("ViT-B-16", "laion2b_s34b_b88k"): dict(activation="GELU", width=768, layers=12, patch=16, native=14, out=512),
    ("ViT-B-16-quickgelu", "metaclip_fullcc"): dict(activation="QuickGELU", width=768, layers=12, patch=16, native=14, out=512),
    ("ViT-L-14-quickgelu", "metaclip_fullcc"): dict(activation="QuickGELU", width=1024, layers=24, patch=14, native=16, out=768),
}
# width, patch, prefix tokens dropped, eps, native table side (None: RoPE, no table), feature grid per crop side
VFMS = {
    "dino_vitb8": dict(width=768, patch=8, prefix=1, eps=1e-6, native=28, grid={336: 42, 224: 28}),
    "dino_vitb16": dict(width=768, patch=16, prefix=1, eps=1e-6, native=14, grid={336: 21, 224: 14}),   # Trident's
    "dinov2_vitb14_reg": dict(width=768, patch=14, prefix=5, eps=1e-6, native=37, grid={336: 24, 224: 16}),
    "mae_vit_base": dict(width=768, patch=16, prefix=1, eps=1e-6, native=14, grid={336: 21, 224: 14}),
    "dinov3_vitb16": dict(width=768, patch=16, prefix=5, eps=1e-5, native=None, grid={336: 21, 224: 14}),
    "sam_vit_b": dict(width=256, patch=16, prefix=0, eps=1e-6, native=64, grid={336: 64, 224: 64}),
}


def float32(mean, std) -> tuple[list[float], list[float]]:
    """Statistics as they run: float32."""
    return torch.tensor(mean, dtype=torch.float32).tolist(), torch.tensor(std, dtype=torch.float32).tolist()


def preset_specs():
    return {path.stem: load_model_spec(path) for path in PRESETS}


class FakeDownloads:
    """Serves, instead of the network, files written from the architecture's own random state dict."""

    def __init__(self, folder: Path):
        self.folder, self.producers, self.served = folder, {}, []

    def produce(self, source: str) -> dict[str, torch.Tensor]:
        # The source's random build says "initialized randomly": that is the file's making, not the load under test.
        logging.disable(logging.WARNING)
        try:
            return self.producers[source]()
        finally:
            logging.disable(logging.NOTSET)

    def hub(self, repo_id, filename=None, revision=None, cache_dir=None, **_):
        if repo_id not in self.producers or not str(filename).endswith(".safetensors"):
            raise EntryNotFoundError(f"{repo_id}/{filename}")     # the libraries then try their next name
        path = self.folder / repo_id.replace("/", "--") / filename
        if not path.is_file():
            path.parent.mkdir(parents=True)
            safetensors.torch.save_file(self.produce(repo_id), str(path))
        self.served.append(path)
        return str(path)

    def url(self, url, dst, hash_prefix=None, progress=True):
        torch.save(self.produce(url), dst)
        self.served.append(Path(dst))


@pytest.fixture
def downloads(tmp_path, monkeypatch):
    fake = FakeDownloads(tmp_path / "hub")
    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", fake.hub)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", fake.hub)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake.url)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch_hub"))
    return fake


def state_sums(state: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.double().sum()) for k, v in state.items()}


@pytest.mark.fullsize
@pytest.mark.parametrize("clip_key", list(CLIPS), ids=lambda key: "/".join(key))
def test_clip_presets_at_full_size(clip_key, downloads):
    name, tag = clip_key
    expected = CLIPS[clip_key]
    users = {stem: spec for stem, spec in preset_specs().items() if (spec["clip_model"], spec["clip_pretrained"]) == clip_key}
    assert users, f"no preset uses CLIP {clip_key}"
    trained = open_clip.get_pretrained_cfg(name, tag)
    for stem, spec in users.items():   # each preset says the activation and the statistics explicitly, and says them right
        assert spec["clip_quick_gelu"] is (expected["activation"] == "QuickGELU"), stem
        assert (spec["clip_mean"], spec["clip_std"]) == (list(trained["mean"]), list(trained["std"])), stem
        assert clip_statistics(name, tag, spec["clip_mean"], spec["clip_std"]) == (trained["mean"], trained["std"]), stem

    repo = os.path.dirname(open_clip.get_pretrained_cfg(name, tag)["hf_hub"])
    written = {}

    def produce():
        source = open_clip.create_model(name, pretrained=None, force_quick_gelu=expected["activation"] == "QuickGELU")
        state = {k: v.contiguous() for k, v in source.state_dict().items()}
        written.update(state_sums(state))
        return state

    downloads.producers[repo] = produce
    spec = next(iter(users.values()))
    model, tokenizer = build_clip(name, tag, spec["clip_quick_gelu"])
    assert [p.name for p in downloads.served] == ["open_clip_model.safetensors"]
    assert state_sums(model.state_dict()) == written                 # the file's weights, every tensor
    assert clip_activation(model) == expected["activation"]          # visual and text MLPs alike
    preprocess = model.visual.preprocess_cfg                         # what open_clip's loading set for these weights
    assert (list(preprocess["mean"]), list(preprocess["std"])) == (spec["clip_mean"], spec["clip_std"])
    visual = model.visual
    assert visual.conv1.kernel_size == (expected["patch"],) * 2 and visual.conv1.out_channels == expected["width"]
    assert len(visual.transformer.resblocks) == expected["layers"] and visual.output_dim == expected["out"]
    assert {m.eps for m in model.modules() if isinstance(m, nn.LayerNorm)} == {1e-5}
    table = visual.positional_embedding[1:]
    assert table.shape[0] == expected["native"] ** 2
    for crop in (336, 224):
        side = crop // expected["patch"]
        resized = resize_pos_embed_offset(table, (side, side))
        assert resized.shape == (side * side, expected["width"])
        assert (resized is table) == (side == expected["native"])    # a 224 crop keeps the native table untouched
    # one forward per method using this CLIP: ProxyCLIP on a 336 crop over a DINO ViT-B/8 grid, the others on a
    # 224 crop over CLIP's own grid; and one prompt through the text tower
    with torch.no_grad():
        for method, options in sorted({(s["method"], tuple(sorted((k, tuple(v) if isinstance(v, list) else v)   # lists: ResCLIP's
                                                                  for k, v in (s["method_kwargs"] or {}).items())))
                                       for s in users.values()}):
            if method == "proxyclip":
                dense = dense_clip_features(visual, torch.randn(1, 3, 336, 336), ProxyAttention(**dict(options)),
                                            torch.randn(1, 768, 42, 42))
                assert dense.shape == (1, expected["out"], 42, 42) and torch.isfinite(dense).all()
            elif method == "resclip":   # RCS reads blocks 5..8 of the 12; SFR needs the text (three prompts here)
                block, side = build_last_block(method, **dict(options)), 224 // expected["patch"]
                assert max(block.rcs_layers) < len(visual.transformer.resblocks) - 1
                text = model.encode_text(tokenizer(["a cat.", "a dog.", "grass."]))
                text = text / text.norm(dim=-1, keepdim=True)
                dense = block.dense(Crops(visual, torch.randn(1, 3, 224, 224), text, 40.0))
                assert dense.shape == (1, expected["out"], side, side) and torch.isfinite(dense).all(), method
            elif method == "corrclip":   # one 224 crop: DINO ViT-B/8's q + k (28 x 28) and a region mask of 3 ids
                block, side = build_last_block(method, instance_mask_path="masks"), 224 // expected["patch"]
                regions = torch.zeros(224, 224, dtype=torch.long)
                regions[:112, :] = 3
                regions[150:, 100:] = 10000
                feats = block.features(visual, torch.randn(1, 3, 224, 224), torch.randn(768, 28, 28), regions)
                assert feats.shape == (28 * 28, expected["out"]) and torch.isfinite(feats).all()
                from proxyclip.methods.corrclip.ops import spatial_blocks
                spatial = spatial_blocks(expected["layers"])   # 5 / 12 / 28 blocks ending at the third last
                assert len(spatial) == {12: 5, 24: 12, 32: 28}[expected["layers"]] and spatial[-1] == expected["layers"] - 3
            elif method == "trident":   # whole images with SAM only: test_trident_preset_at_full_size
                continue
            else:
                side = 224 // expected["patch"]   # dense: a method reading earlier blocks (scclip) checks its indices here
                keys = torch.randn(1, 12, 64, 28, 28) if method == "cass" else None   # DINO ViT-B/8's keys of a 224 crop
                dense = build_last_block(method, **dict(options)).dense(Crops(visual, torch.randn(1, 3, 224, 224), None, 40.0, keys))
                assert dense.shape == (1, expected["out"], side, side) and torch.isfinite(dense).all(), method
        text = model.encode_text(tokenizer(["a photo of a cat."]))
    assert text.shape == (1, expected["out"])


@pytest.mark.fullsize
@pytest.mark.parametrize("vfm_name", list(VFMS))
def test_vfm_presets_at_full_size(vfm_name, downloads):
    expected = VFMS[vfm_name]
    users = [stem for stem, spec in preset_specs().items() if spec["vfm"] == vfm_name]
    assert users, f"no preset uses VFM {vfm_name}"
    for stem in users:
        spec = preset_specs()[stem]
        assert spec["vfm_pretrained"] is True and not (spec.get("vfm_kwargs") or {}), stem   # the real size, no overrides
        stated = vfm_statistics(vfm_name, True, spec["vfm_mean"], spec["vfm_std"])   # agrees with the weights', or raises
        assert float32(spec["vfm_mean"], spec["vfm_std"]) == float32(*stated), stem
    entry = get_vfm_entry(vfm_name)
    written = {}
    if vfm_name.startswith("sam"):
        url = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"

        def produce():
            state = sam_model_registry["vit_b"]().state_dict()    # the whole SAM, as Meta's checkpoint holds it
            written.update(state_sums({k[len("image_encoder."):]: v for k, v in state.items() if k.startswith("image_encoder.")}))
            return state

        downloads.producers[url] = produce
    else:
        timm_name = entry.kwargs["model_name"]

        def produce():
            state = {k: v.contiguous() for k, v in timm.create_model(timm_name, pretrained=False).state_dict().items()}
            written.update(state_sums(state))
            return state

        downloads.producers[timm.models.get_pretrained_cfg(timm_name).hf_hub_id] = produce
    vfm = build_vfm(vfm_name, pretrained=True)
    assert len(downloads.served) == 1
    inner = vfm.encoder if vfm_name.startswith("sam") else vfm.model
    assert state_sums(inner.state_dict()) == written
    assert vfm.embed_dim == expected["width"] and vfm.patch_size == expected["patch"]
    assert {m.eps for m in inner.modules() if isinstance(m, nn.LayerNorm)} == {expected["eps"]}
    if vfm_name.startswith("sam"):   # SAM's own normalisation, as Meta's build holds it (0-255 float32 buffers) ...
        sam = sam_model_registry["vit_b"]()
        stated = torch.tensor([spec["vfm_mean"], spec["vfm_std"]])
        assert torch.allclose(stated, torch.stack([sam.pixel_mean, sam.pixel_std]).view(2, 3) / 255, rtol=1e-6, atol=0)
        # ... which are ImageNet's, the constants the original ProxyCLIP normalises SAM's input with
        assert float32(spec["vfm_mean"], spec["vfm_std"]) == float32([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    else:                            # what timm's loading set on the model for these weights
        assert float32(spec["vfm_mean"], spec["vfm_std"]) == float32(inner.pretrained_cfg["mean"], inner.pretrained_cfg["std"])
    if vfm_name.startswith("sam"):
        assert vfm.input_size == (1024, 1024) and inner.pos_embed.shape[1:3] == (64, 64)
    else:
        assert inner.num_prefix_tokens == expected["prefix"] and inner.embed_dim == 768
        if expected["native"] is None:
            assert inner.pos_embed is None and inner.rope is not None   # DINOv3: RoPE for any grid
        else:
            n_pos_prefix = 0 if inner.no_embed_class else inner.num_prefix_tokens
            table = inner.pos_embed[0, n_pos_prefix:]
            assert table.shape[0] == expected["native"] ** 2
            for crop in (336, 224):
                grid = vfm.grid_size(crop, crop, crop_size=crop)
                resized = vfm.resize_table(table, grid)
                assert resized.shape == (grid[0] * grid[1], 768)
                assert (resized is table) == (grid[0] == expected["native"])   # native grids keep their table
    for crop in (336, 224):
        assert vfm.grid_size(crop, crop, crop_size=crop) == (expected["grid"][crop],) * 2
    if vfm_name.startswith("mae"):   # Cityscapes: MAE at 224, the crop not resized
        assert vfm.input_size_for(224) == (224, 224) and vfm.input_size_for(336) == (336, 336)
    with torch.no_grad():
        feats = vfm(torch.randn(1, 3, 336, 336), crop_size=336)
    side = expected["grid"][336]
    assert feats.shape == (1, expected["width"], side, side) and torch.isfinite(feats).all()


def test_every_preset_is_a_checked_combination():
    specs = preset_specs()
    assert len(specs) == 28   # default.yaml is vitb16_dino_vitb8 under the paper's name; 6 presets of the baselines; CASS's; Trident's 2; CorrCLIP's 4
    for stem, spec in specs.items():
        assert (spec["clip_model"], spec["clip_pretrained"]) in CLIPS, stem
        assert spec["clip_mean"] is not None and spec["clip_std"] is not None, stem   # stated (checked per CLIP above)
        assert (spec["vfm_mean"] is not None) == (spec["vfm_std"] is not None) == (spec["method"] in ("proxyclip", "cass", "trident", "corrclip")), stem
        if spec["method"] == "trident":   # proxyclip/methods/trident/README.md: DINO ViT-B/16, 56-pixel padding, no PAMR
            assert (spec["vfm"], spec["pad_multiple"], spec["pamr_steps"], spec["logit_scale"]) == ("dino_vitb16", 56, 0, 40.0)
        elif spec["method"] == "corrclip":   # proxyclip/methods/corrclip/README.md: DINO ViT-B/8, pad 56, no PAMR, no mask source
            assert (spec["vfm"], spec["pad_multiple"], spec["pamr_steps"], spec["logit_scale"]) == ("dino_vitb8", 56, 0, 40.0)
            assert stem.startswith("corrclip_") and not spec["method_kwargs"], stem
        elif spec["method"] == "cass":   # proxyclip/methods/cass/README.md: DINO ViT-B/8, no padding, no PAMR
            assert (spec["vfm"], spec["pad_multiple"], spec["pamr_steps"], spec["logit_scale"]) == ("dino_vitb8", 1, 0, 40.0)
        elif spec["method"] == "proxyclip":
            assert spec["vfm"] in VFMS, stem
            assert spec["method_kwargs"] == {"beta": 1.2, "gamma": 3.0}, stem   # ProxyCLIP's own, as its defaults
        else:   # proxyclip/methods/<method>/README.md: no VFM; SCLIP and NACLIP never pad a crop, ClearCLIP pads to CLIP's patch
            assert stem.startswith(spec["method"] + "_") and spec["vfm"] is None, stem
            patch = CLIPS[spec["clip_model"], spec["clip_pretrained"]]["patch"]
            assert spec["pad_multiple"] == (patch if spec["method"] == "clearclip" else 1), stem
            assert (spec["pamr_steps"], tuple(spec["pamr_dilations"])) == ((10, (8, 16)) if spec["method"] == "naclip" else (0, (8, 16))), stem
            assert spec["logit_scale"] == {"sclip": 40.0, "clearclip": 50, "naclip": 40.0, "scclip": 40.0, "resclip": 40.0}[spec["method"]], stem
        if spec["method"] == "scclip":   # every option stated, at the original's values (configs/base_config.py:4-8)
            assert spec["method_kwargs"] == dict(similarity_thd=0.4, pre_adjust_idx=8, post_adjust_idx=3, multi_start_idx=3,
                                                 multi_end_idx=10, res_cls=0.3, n_neighbors=30, contamination=0.05), stem


@pytest.mark.fullsize
def test_default_preset_segmentor_runs_quickgelu_everywhere(downloads):
    """`build_segmentor("configs/model/default.yaml")`, the paper's model: every CLIP MLP is QuickGELU."""
    from proxyclip import build_segmentor

    downloads.producers["timm/vit_base_patch16_clip_224.openai"] = lambda: {
        k: v.contiguous() for k, v in open_clip.create_model("ViT-B-16", force_quick_gelu=True).state_dict().items()}
    downloads.producers["timm/vit_base_patch8_224.dino"] = lambda: timm.create_model("vit_base_patch8_224.dino").state_dict()
    seg = build_segmentor(REPO_ROOT / "configs/model/default.yaml", class_names=["sky", "person"])
    activations = [type(m) for path, m in seg.clip.named_modules() if path.endswith("mlp.gelu")]
    assert len(activations) == 24 and {a.__name__ for a in activations} == {"QuickGELU"}
    assert seg.clip_mean.flatten().tolist() == torch.tensor(open_clip.constants.OPENAI_DATASET_MEAN).tolist()
    assert seg.vfm_std.flatten().tolist() == torch.tensor([0.229, 0.224, 0.225]).tolist()


@pytest.mark.fullsize
def test_cass_preset_at_full_size(downloads):
    """configs/model/cass_vitb16.yaml built through the real loading code (random weights served): CLIP's 12 heads of
    64 pair with DINO ViT-B/8's; DINO's keys of a 224 crop are 28 x 28 over its native 1 + 28 x 28 table and equal the
    vendored DINO's computation (tests/test_cass.py); VOC21's whole image (336 x 500) gives 42 x 42 keys of its
    336 x 336 square; one 224 crop runs through the whole method."""
    from proxyclip import build_segmentor
    from test_cass import reference_dino_keys

    downloads.producers["timm/vit_base_patch16_clip_224.openai"] = lambda: {
        k: v.contiguous() for k, v in open_clip.create_model("ViT-B-16", force_quick_gelu=True).state_dict().items()}
    downloads.producers["timm/vit_base_patch8_224.dino"] = lambda: timm.create_model("vit_base_patch8_224.dino").state_dict()
    seg = build_segmentor(REPO_ROOT / "configs/model/cass_vitb16.yaml", class_names=["sky", "person; man"], crop_size=224,
                          stride=112).eval()
    clip_attn, dino = seg.clip.visual.transformer.resblocks[-1].attn, seg.vfm.model
    assert len(seg.clip.visual.transformer.resblocks) == 12 and len(dino.blocks) == 12
    assert (clip_attn.num_heads, clip_attn.head_dim) == (dino.blocks[-1].attn.num_heads, dino.blocks[-1].attn.head_dim) == (12, 64)
    assert dino.pos_embed.shape == (1, 1 + 28 * 28, 768) and dino.num_prefix_tokens == 1
    statistics = (seg.clip_mean, seg.clip_std, seg.vfm_mean, seg.vfm_std)
    with torch.no_grad():
        crop = torch.randn(1, 3, 224, 224).clamp(-1.5, 1.5)
        keys = seg.last_block.vfm_features(seg.vfm, crop, statistics, 224)
        assert keys.shape == (1, 12, 64, 28, 28)
        from proxyclip.methods.cass.ops import cass_vfm_pixels
        expected = reference_dino_keys(dino, cass_vfm_pixels(crop, seg.vfm_mean, seg.vfm_std))
        torch.testing.assert_close(keys[0], expected, rtol=1e-4, atol=1e-4)
        assert seg.last_block.vfm_features(seg.vfm, torch.zeros(1, 3, 336, 500), statistics, None).shape == (1, 12, 64, 42, 42)
        logits = seg.crop_logits(crop)
    assert logits.shape == (1, 3, 224, 224) and torch.isfinite(logits).all()


@pytest.mark.fullsize
def test_trident_preset_at_full_size(downloads):
    """configs/model/trident_vitb16.yaml built through the real loading code (random weights served, SAM's the whole
    model as Meta's checkpoint holds it): SAM ViT-B's encoder (12 blocks of 768, the last global, 64 x 64 tokens of
    1024), prompt encoder and mask decoder (256 wide, 256 x 256 mask prompts); DINO ViT-B/16's features of a 336
    window (21 x 21 over its native 14 x 14 table) equal DINO's get_intermediate_layers (tests/test_trident.py); one
    image through the whole method, the SAM refinement included."""
    from proxyclip import build_segmentor
    from proxyclip.method.last_block import ImageSource
    from test_trident import reference_dino

    url = "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    written = {}

    def produce_sam():
        state = sam_model_registry["vit_b"]().state_dict()
        written.update(state_sums(state))
        return state

    downloads.producers[url] = produce_sam
    downloads.producers["timm/vit_base_patch16_clip_224.openai"] = lambda: {
        k: v.contiguous() for k, v in open_clip.create_model("ViT-B-16", force_quick_gelu=True).state_dict().items()}
    downloads.producers["timm/vit_base_patch16_224.dino"] = lambda: timm.create_model("vit_base_patch16_224.dino").state_dict()
    seg = build_segmentor(REPO_ROOT / "configs/model/trident_vitb16.yaml", class_names=["sky", "person; man"],
                          crop_size=336, stride=224).eval()
    sam = seg.last_block.sam_model
    assert state_sums(sam.state_dict()) == written                    # the whole SAM is the file's
    enc = sam.image_encoder
    assert (len(enc.blocks), enc.img_size, enc.pos_embed.shape) == (12, 1024, (1, 64, 64, 768))
    assert enc.blocks[-1].window_size == 0 and enc.blocks[-1].attn.num_heads == 12
    assert sam.prompt_encoder.image_embedding_size == (64, 64) and sam.prompt_encoder.mask_input_size == (256, 256)
    assert sam.mask_decoder.transformer_dim == 256 and sam.mask_decoder.num_mask_tokens == 4
    dino = seg.vfm.model
    assert dino.pos_embed.shape == (1, 1 + 14 * 14, 768) and seg.vfm.patch_size == 16
    with torch.no_grad():
        x = torch.randn(1, 3, 336, 336).clamp(-2, 2)
        torch.testing.assert_close(seg.vfm(x, crop_size=336), reference_dino(dino, x), rtol=1e-4, atol=1e-4)
        image = (torch.rand(3, 120, 170) * 255).to(torch.uint8)
        source = ImageSource(image, (120, 170))
        whole = seg.last_block.image_logits(seg.engine(), source)      # SAM: 128 x 176 -> 745 x 1024 -> 46 x 64 tokens
        logits, source.state = whole.logits, whole.state                 # as the segmentor keeps it for decide
        assert logits.shape == (3, 120, 170) and torch.isfinite(logits).all()
        assert source.state.features.shape == (1, 256, 64, 64) and source.state.input_size == (745, 1024)
        probs = seg.class_probabilities(logits)
        labels = seg.decide(probs, source)
    assert labels.shape == (120, 170)


@pytest.mark.fullsize
def test_corrclip_preset_at_full_size(downloads, tmp_path):
    """configs/model/corrclip_vitb16.yaml (MetaCLIP ViT-B-16-quickgelu, DINO ViT-B/8) built through the real loading
    code (random weights served), with a folder of one region mask: QuickGELU everywhere, OpenAI's statistics, DINO's
    q + k of a 224 crop on its 28 x 28 grid equal the vendored DINO's hook, and one 224 x 280 image runs whole."""
    import numpy as np

    from proxyclip import build_segmentor
    from test_cass import reference_dino_qkv

    downloads.producers["timm/vit_base_patch16_clip_224.metaclip_2pt5b"] = lambda: {
        k: v.contiguous() for k, v in open_clip.create_model("ViT-B-16-quickgelu").state_dict().items()}
    downloads.producers["timm/vit_base_patch8_224.dino"] = lambda: timm.create_model("vit_base_patch8_224.dino").state_dict()
    regions = np.zeros((224, 280), dtype=np.int64)
    regions[:100, :140], regions[120:, 60:] = 1, 2
    np.savez(tmp_path / "img.npz", instance_mask=regions)
    seg = build_segmentor(REPO_ROOT / "configs/model/corrclip_vitb16.yaml", class_names=["sky", "person; man"],
                          crop_size=224, stride=112, method_kwargs={"instance_mask_path": str(tmp_path)}).eval()
    activations = [type(m) for path, m in seg.clip.named_modules() if path.endswith("mlp.gelu")]
    assert len(activations) == 24 and {a.__name__ for a in activations} == {"QuickGELU"}
    assert seg.clip_mean.flatten().tolist() == torch.tensor(open_clip.constants.OPENAI_DATASET_MEAN).tolist()
    assert len(seg.clip.visual.transformer.resblocks) == 12 and len(seg.vfm.model.blocks) == 12
    statistics = (seg.clip_mean, seg.clip_std, seg.vfm_mean, seg.vfm_std)
    with torch.no_grad():
        crop = torch.randn(1, 3, 224, 224).clamp(-1.5, 1.5)
        qk = seg.last_block.vfm_features(seg.vfm, crop, statistics, 224)
        assert qk.shape == (1, 768, 28, 28)
        qkv = reference_dino_qkv(seg.vfm.model, (crop * seg.clip_std + seg.clip_mean - seg.vfm_mean) / seg.vfm_std)
        hook = torch.cat([qkv[:, 0, h] for h in range(12)], dim=-1)
        torch.testing.assert_close(qk[0], (hook[0] + hook[1])[1:].T.reshape(768, 28, 28), rtol=1e-4, atol=1e-4)
        image = (torch.rand(3, 224, 280) * 255).to(torch.uint8)
        probs, labels = seg.predict_batch([image], None, [str(tmp_path / "img.jpg")])[0]
    assert probs.shape == (2, 224, 280) and torch.isfinite(probs).all()
    for region in (1, 2):                                   # the vote: one label per region
        assert labels[torch.from_numpy(regions) == region].unique().numel() == 1
    del seg


@pytest.mark.fullsize
def test_sam2_hiera_l_region_masks_at_full_size(downloads, caplog):
    """CorrCLIP's SAM 2 (corrclip_segmentor.py:264-272): sam2_hiera_l through sam2's build_sam2, Meta's checkpoint
    (a random {"model": state_dict} served for its URL) loaded strictly by our loader without a word from sam2;
    224.4M parameters (SAM 2's model card), 1024 input, the original's generator settings."""
    if not os.environ.get("CI"):             # CI installs the sam2 extra (.ci/run): never a silent skip there
        pytest.importorskip("sam2")
    import warnings

    from sam2.build_sam import build_sam2

    from proxyclip.methods.corrclip.sam2_masks import SAM2_MODELS, SAM2MaskGenerator

    url = SAM2_MODELS["sam2_hiera_l"].url
    assert url == "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_large.pt"   # CorrCLIP README:59
    written = {}

    def produce():
        state = build_sam2("sam2_hiera_l.yaml", None, device="cpu", apply_postprocessing=False).state_dict()
        written.update(state_sums(state))
        return {"model": state}                  # the checkpoint's format: sam2/build_sam.py _load_checkpoint

    downloads.producers[url] = produce
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sam2 = SAM2MaskGenerator()               # the defaults: sam2_hiera_l, the official checkpoint
    assert len(downloads.served) == 1 and sam2.weights == url
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in said if re.search(r"missing|unexpected|mismatch|not loaded|size", m, re.I)], said
    assert state_sums(sam2.model.state_dict()) == written
    assert sum(p.numel() for p in sam2.model.parameters()) == 224_430_130 and sam2.image_size == 1024
    trunk = sam2.model.image_encoder.trunk
    assert len(trunk.blocks) == 48 and trunk.patch_embed.proj.out_channels == 144      # Hiera-L: stages 2-6-36-4, 144 wide
    generator = sam2.generator
    assert (generator.pred_iou_thresh, generator.stability_score_thresh, generator.multimask_output) == (0.4, 0.4, False)
    assert generator.point_grids[0].shape == (64, 2) and not sam2.half and next(sam2.model.parameters()).dtype == torch.float32
