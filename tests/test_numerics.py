"""numerics "original": CLIP's and the VFM's inputs bit for bit as each original harness computes them from the same
uint8 pixels (docs/method.md §1-§2, proxyclip/methods/<method>/README.md); "defined": the weights' own statistics on x / 255.

The originals' preprocessing is written out below from their code, with its file:line. Every original builds mmseg
1.1.1's SegDataPreProcessor (ProxyCLIP proxyclip_segmentor.py:33-37, SCLIP clip_segmentor.py:23-26, ClearCLIP
clearclip_segmentor.py:24-27, NACLIP naclip.py:24), whose forward (mmseg/models/data_preprocessor.py:113-118)
flips BGR to RGB (our images are RGB already), casts to float32 and computes (x - mean) / std with its
float32 buffers (:85-88).
"""
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from conftest import REPO_ROOT, TINY_CLIP, TINY_CONFIG, VOCAB, random_image, tiny_vfm_kwargs
from proxyclip import ProxyCLIPError, build_segmentor
from proxyclip.method.pamr import pamr
from proxyclip.method.pixel_statistics import clip_statistics, mmseg_constants, vfm_statistics

MMSEG_MEAN, MMSEG_STD = [122.771, 116.746, 104.094], [68.501, 66.632, 70.323]   # every original's data_preprocessor
IMAGES = [random_image(100, 90, 3), random_image(112, 150, 4)]          # crops of 112 (padded) and 112 x 150


# --- the originals' own preprocessing, from their code ---------------------------------------------------------------
def original_clip_input(image: torch.Tensor) -> torch.Tensor:
    """mmseg 1.1.1 mmseg/models/data_preprocessor.py:85-88 (buffers `torch.tensor(mean).view(-1, 1, 1)`), :116
    (`_input.float()`), :118 (`(_input - self.mean) / self.std`): [3, H, W] uint8 -> [1, 3, H, W]."""
    mean, std = torch.tensor(MMSEG_MEAN).view(-1, 1, 1), torch.tensor(MMSEG_STD).view(-1, 1, 1)
    return ((image.float() - mean) / std)[None]


def original_crops(x: torch.Tensor, crop: int, stride: int, pad_multiple: int, mode: str) -> list[torch.Tensor]:
    """The crops CLIP sees: ProxyCLIP proxyclip_segmentor.py:204-223 (SCLIP clip_segmentor.py:96-109, ClearCLIP
    clearclip_segmentor.py:154-173, NACLIP naclip.py:87-100 the same loop; NACLIP's "whole" is the image itself),
    zero-padded with compute_padsize (proxyclip_segmentor.py:294-306) where the original pads."""
    if mode == "whole":
        return [x]
    h_img, w_img = x.shape[-2:]
    crops = []
    for h_idx in range(max(h_img - crop + stride - 1, 0) // stride + 1):
        for w_idx in range(max(w_img - crop + stride - 1, 0) // stride + 1):
            y2, x2 = min(h_idx * stride + crop, h_img), min(w_idx * stride + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            crop_img = x[:, :, y1:y2, x1:x2]
            H, W = crop_img.shape[2:]
            l = r = t = b = 0
            if W % pad_multiple:
                lr = pad_multiple - W % pad_multiple
                l, r = lr // 2, lr - lr // 2
            if H % pad_multiple:
                tb = pad_multiple - H % pad_multiple
                t, b = tb // 2, tb - tb // 2
            crops.append(F.pad(crop_img, (l, r, t, b)) if any((l, r, t, b)) else crop_img)
    return crops


def un_normalize(image: torch.Tensor) -> torch.Tensor:
    """ProxyCLIP myutils.py:11-15 with the constants of proxyclip_segmentor.py:79 (one image [3, H, W])."""
    image2 = torch.clone(image)
    for t, m, s in zip(image2, [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]):
        t.mul_(s).add_(m)
    return image2


def normalize(tensor: torch.Tensor) -> torch.Tensor:
    """torchvision 0.14.1 transforms.Normalize (transforms.py:270) -> functional_tensor.normalize (:928-940) with
    ProxyCLIP's constants (proxyclip_segmentor.py:80)."""
    tensor = tensor.clone()
    mean = torch.as_tensor([0.485, 0.456, 0.406], dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    std = torch.as_tensor([0.229, 0.224, 0.225], dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    return tensor.sub_(mean).div_(std)


def original_vfm_input(crop_img: torch.Tensor, family: str, slide_crop: int) -> torch.Tensor:
    """proxyclip_segmentor.py:113-114 (per image), then SAM's resize to 1024 (:120) or MAE's to the crop (:163);
    in float32 (the original casts to half at :116, a precision, not a preprocessing, choice)."""
    imgs_norm = torch.stack([normalize(un_normalize(crop_img[i])) for i in range(len(crop_img))], dim=0)
    if family == "sam":
        imgs_norm = F.interpolate(imgs_norm, size=(1024, 1024), mode="bilinear", align_corners=False)
    elif family == "mae":
        imgs_norm = F.interpolate(imgs_norm, size=(slide_crop, slide_crop), mode="bilinear", align_corners=False)
    return imgs_norm


# --- what our benchmark path computes -------------------------------------------------------------------------------
def captured_inputs(seg, image, family=None):
    """Run `seg` on `image`; the tensors CLIP's patch embedding and the VFM's model received, one per crop."""
    seen = {"clip": [], "vfm": []}
    hooks = [seg.clip.visual.conv1.register_forward_pre_hook(lambda m, args: seen["clip"].append(args[0].clone()))]
    if family is not None:   # the VFM model's own input: after SAM's and MAE's resize, as the original feeds it
        module = seg.vfm.encoder if family == "sam" else seg.vfm.model.patch_embed if family == "mae" else seg.vfm
        hooks.append(module.register_forward_pre_hook(lambda m, args: seen["vfm"].append(args[0].clone())))
    try:
        logits = seg([image])[0]
    finally:
        for hook in hooks:
            hook.remove()
    return seen, logits


def assert_same_crops(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    """Each crop of the original, bit for bit, once among ours (our crops run grouped by shape)."""
    assert len(ours) == len(reference)
    left = list(ours)
    for expected in reference:
        match = [i for i, got in enumerate(left) if got.shape == expected.shape and torch.equal(got, expected)]
        assert match, f"no crop of ours equals the original's {tuple(expected.shape)} crop in float32"
        left.pop(match[0])


def test_the_rounded_constants_are_mmseg_s():
    """OpenAI's statistics x 255, rounded to 3 decimals, are every original's data_preprocessor constants."""
    assert mmseg_constants(OPENAI_DATASET_MEAN) == tuple(MMSEG_MEAN)
    assert mmseg_constants(OPENAI_DATASET_STD) == tuple(MMSEG_STD)
    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB, numerics="original")
    assert torch.equal(seg.clip_mean_255, torch.tensor(MMSEG_MEAN).view(-1, 1, 1))
    assert torch.equal(seg.clip_std_255, torch.tensor(MMSEG_STD).view(-1, 1, 1))


VFM_CASES = ["dino_vitb8", "dinov2_vitb14_reg", "mae_vit_base", "sam_vit_b", "dinov3_vitb16"]


@pytest.mark.parametrize("vfm", VFM_CASES)
def test_proxyclip_inputs_equal_the_original_s(vfm):
    family = vfm.split("_")[0]
    crop = 160 if family == "mae" else 112      # MAE: padded crops (112, 168) resized to the 160 crop, as the original
    kwargs = tiny_vfm_kwargs(vfm, **({"img_size": 1024} if family == "sam" else {}))   # SAM at its real 1024 input
    torch.manual_seed(0)
    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB, vfm=vfm, vfm_kwargs=kwargs, crop_size=crop, stride=56,
                          crop_batch_size=1, numerics="original").eval()
    for image in IMAGES:
        seen, _ = captured_inputs(seg, image, family)
        reference = original_crops(original_clip_input(image), crop, 56, 56, "slide")
        assert_same_crops(seen["clip"], reference)
        assert_same_crops(seen["vfm"], [original_vfm_input(c, family, crop) for c in reference])


@pytest.mark.parametrize("method", ["sclip", "clearclip", "naclip"])
def test_baseline_inputs_equal_the_original_s(method, tmp_path):
    preset = yaml.safe_load((REPO_ROOT / "configs" / "model" / f"{method}_vitb16.yaml").read_text())["segmentor"]
    preset.update(clip_model=TINY_CLIP, clip_pretrained=None, crop_size=112, stride=56, crop_batch_size=1,
                  numerics="original", mode="whole" if method == "naclip" else "slide")   # NACLIP's benchmarks: whole
    seg = build_segmentor({"segmentor": preset}, class_names=VOCAB).eval()
    for image in IMAGES:
        seen, logits = captured_inputs(seg, image)
        x = original_clip_input(image)
        assert_same_crops(seen["clip"], original_crops(x, 112, 56, seg.pad_multiple, seg.mode))
        if method == "naclip":   # PAMR's guide: naclip.py:130, the normalised input resized to the image's size
            guide = F.interpolate(x, size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)
            expected = pamr(guide, logits[None], seg.pamr_steps, seg.pamr_dilations)[0]
            assert torch.equal(seg.refine(logits, image), expected)


def test_defined_numerics_use_the_statistics_on_x_over_255():
    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB, crop_size=112, stride=56, crop_batch_size=1).eval()
    assert seg.numerics == "defined"          # outside the CLI
    image = IMAGES[1]
    seen, _ = captured_inputs(seg, image, "dino")
    mean, std = torch.tensor(OPENAI_DATASET_MEAN).view(3, 1, 1), torch.tensor(OPENAI_DATASET_STD).view(3, 1, 1)
    x = ((image.float() / 255 - mean) / std)[None]
    assert_same_crops(seen["clip"], original_crops(x, 112, 56, 56, "slide"))
    assert not torch.equal(x, original_clip_input(image))       # the two numerics differ (by up to ~1e-5)


# --- item 6: the statistics come from the weights ---------------------------------------------------------------------
def test_clip_statistics_come_from_the_tag():
    assert clip_statistics("ViT-B-16", "openai", None, None) == (OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)
    assert clip_statistics("ViT-L-14", "laion2b_s32b_b82k", None, None) == ((0.5,) * 3, (0.5,) * 3)
    assert clip_statistics("ViT-L-14", "laion2b_s32b_b82k", [0.5] * 3, [0.5] * 3) == ((0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ProxyCLIPError, match=r"clip_mean=\[0.48145466, .*contradicts .*ViT-L-14 \(laion2b_s32b_b82k\).*"
                                             r"\[0.5, 0.5, 0.5\]"):
        clip_statistics("ViT-L-14", "laion2b_s32b_b82k", OPENAI_DATASET_MEAN, None)
    assert clip_statistics(TINY_CLIP, None, None, None) == (OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)   # random: open_clip's default
    assert clip_statistics(TINY_CLIP, None, [0.5] * 3, [0.25] * 3) == ((0.5,) * 3, (0.25,) * 3)        # random: as stated
    with pytest.raises(ProxyCLIPError, match="does not say which pixel statistics.*clip_mean and clip_std"):
        clip_statistics("ViT-B-16", "/weights/clip.bin", [0.5] * 3, None)
    assert clip_statistics("ViT-B-16", "/weights/clip.bin", [0.5] * 3, [0.5] * 3) == ((0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ProxyCLIPError, match="clip_std must be positive"):
        clip_statistics(TINY_CLIP, None, [0.5] * 3, [0.5, 0.0, 0.5])


def test_vfm_statistics_come_from_the_registry():
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for name in ("dino_vitb8", "dinov2_vitb14_reg", "dinov3_vitb16", "mae_vit_base"):
        assert vfm_statistics(name, True, None, None) == imagenet, name
    sam_mean, sam_std = vfm_statistics("sam_vit_b", True, None, None)   # segment_anything's pixel_mean / 255
    assert torch.equal(torch.tensor(sam_mean), torch.tensor(imagenet[0])) and torch.equal(torch.tensor(sam_std), torch.tensor(imagenet[1]))
    assert vfm_statistics("sam_vit_b", True, *imagenet) == (sam_mean, sam_std)      # equal in float32: agrees
    with pytest.raises(ProxyCLIPError, match=r"vfm_std=\[0.5, 0.5, 0.5\] contradicts the weights of the VFM dino_vitb8"):
        vfm_statistics("dino_vitb8", True, None, [0.5] * 3)
    assert vfm_statistics("dino_vitb8", False, None, [0.5] * 3) == (imagenet[0], (0.5,) * 3)   # random weights: applied
    proxyclip_only = dict(vfm=None, vfm_pretrained=None, vfm_kwargs=None, method_kwargs=None, vfm_std=None)
    with pytest.raises(ProxyCLIPError, match=r"vfm_mean=\[0.5, 0.5, 0.5\]: an option of cass, corrclip, proxyclip and trident only; the sclip method"):
        build_segmentor(TINY_CONFIG, class_names=VOCAB, method="sclip", vfm_mean=[0.5] * 3, **proxyclip_only)


def test_stated_statistics_are_what_runs():
    seg = build_segmentor(TINY_CONFIG, class_names=VOCAB, clip_mean=[0.5] * 3, clip_std=[0.25] * 3, vfm_std=[0.5] * 3,
                          crop_size=112, stride=56, crop_batch_size=1).eval()
    image = IMAGES[0]
    seen, _ = captured_inputs(seg, image, "dino")
    x = F.pad((image.float() / 255 - 0.5) / 0.25, (11, 11, 6, 6))[None]                   # 100 x 90 -> 112 x 112
    assert torch.equal(seen["clip"][0], x)
    vfm_mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    assert torch.equal(seen["vfm"][0], ((x * torch.tensor(0.25) + torch.tensor(0.5)) - vfm_mean) / torch.tensor(0.5))
    original = build_segmentor(TINY_CONFIG, class_names=VOCAB, clip_mean=[0.5] * 3, clip_std=[0.5] * 3, numerics="original")
    assert original.clip_mean_255.flatten().tolist() == [127.5] * 3 == original.clip_std_255.flatten().tolist()


def test_the_cli_refuses_contradicting_statistics_before_any_model(tmp_path, capsys):
    """The paper's preset (OpenAI's weights) with another clip_mean: one paragraph, exit 2, nothing downloaded."""
    from fake_datasets import WRITERS
    from proxyclip.commands.cli import cli_main

    root = WRITERS["voc21"](tmp_path / "data", n=1)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["test", "--config", "configs/voc21.yaml", "--data.init_args.root", str(root),
                  "--model.segmentor.init_args.clip_mean", "[0.5, 0.5, 0.5]", "--model.output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: clip_mean=[0.5, 0.5, 0.5] contradicts the weights of CLIP ViT-B-16 (openai), which were trained with "
        "mean [0.48145466, 0.4578275, 0.40821073]. Set clip_mean to [0.48145466, 0.4578275, 0.40821073] or null (from "
        "the weights).")


def test_benchmarks_run_original_numerics_and_image_folders_defined(tmp_path):
    from fake_datasets import WRITERS
    from proxyclip.commands.cli import cli_main

    root = WRITERS["voc21"](tmp_path / "data", n=1)
    cli = cli_main(["test", "--config", "configs/voc21.yaml", "--model", str(TINY_CONFIG), "--data.init_args.root", str(root),
                    "--model.output_dir", str(tmp_path / "out"), "--trainer.logger", "false"])
    assert cli.datamodule.numerics == cli.model.segmentor.numerics == "original"
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(random_image(40, 60, 5).permute(1, 2, 0).numpy()).save(photos / "a.png")
    cli = cli_main(["predict", "--config", "configs/demo.yaml", "--model", str(TINY_CONFIG), "--data.init_args.inputs",
                    str(photos), "--prediction_writer.output_dir", str(tmp_path / "p"), "--trainer.logger", "false",
                    "--trainer.default_root_dir", str(tmp_path)])
    assert cli.model.segmentor.numerics == "defined"
    # either side may choose: the model-side value is applied as the data option (links), for predict too
    cli = cli_main(["predict", "--config", "configs/demo.yaml", "--model", str(TINY_CONFIG), "--data.init_args.inputs",
                    str(photos), "--prediction_writer.output_dir", str(tmp_path / "q"), "--trainer.logger", "false",
                    "--trainer.default_root_dir", str(tmp_path), "--model.segmentor.init_args.numerics", "original"])
    assert cli.datamodule.numerics == cli.model.segmentor.numerics == "original"
