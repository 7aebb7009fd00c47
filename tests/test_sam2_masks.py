"""SAM 2 region masks (proxyclip/methods/corrclip/sam2_masks.py) and `proxyclip-masks` (proxyclip/commands/masks.py).

The painting of CorrCLIP's generate_mask (corrclip_segmentor.py:334-341) on hand cases, the npz files both ways, a
tiny random Hiera built through sam2's own `build_sam2` (Hydra overrides) run end to end, and the command on a fake
VOC layout and on a folder, twice. sam2 is an optional extra: these tests skip without it, except in CI (CI=true),
which installs it (.ci/run) and must run them.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from fake_datasets import write_voc
from proxyclip.errors import ProxyCLIPError
from proxyclip.methods.corrclip.sam2_masks import (SAM2_MODELS, SAM2MaskGenerator, instance_mask_from_annotations,
                                         read_instance_mask, sam2_missing_message, write_instance_mask)

if os.environ.get("CI"):
    import sam2  # noqa: F401  - CI installs the extra: never a silent skip there
else:
    pytest.importorskip("sam2", reason="the sam2 extra is not installed (pip install .[sam2])")


# A tiny Hiera through the real factory: embed 8 -> 64 over four stages (one block each, two in the last, whose second
# is the global one), a 32-wide neck and decoder. Still SAM 2's 1024 input, so every size sam2 hard-codes holds.
TINY = ["++model.image_encoder.trunk.embed_dim=8", "++model.image_encoder.trunk.num_heads=1",
        "++model.image_encoder.trunk.stages=[1,1,1,2]", "++model.image_encoder.trunk.global_att_blocks=[4]",
        "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[2,2]",
        "++model.image_encoder.neck.d_model=32", "++model.image_encoder.neck.position_encoding.num_pos_feats=32",
        "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]"]


def ann(mask: np.ndarray) -> dict:
    """An annotation as SAM2AutomaticMaskGenerator gives it (binary_mask mode): only what the painting reads matters."""
    return {"segmentation": mask.astype(bool), "area": int(mask.sum()), "predicted_iou": 0.9, "stability_score": 0.9}


def original_painting(anns: list[dict], h: int, w: int) -> np.ndarray:
    """corrclip_segmentor.py:334-341, transcribed."""
    instance_mask = np.zeros((h, w), dtype=int)
    if len(anns) != 0:
        sorted_anns = sorted(anns, key=(lambda x: x["area"]))
        instance_id = 1
        for a in sorted_anns:
            instance_mask[a["segmentation"]] = instance_id
            instance_id += 1
    return instance_mask


def hand_case() -> tuple[list[dict], np.ndarray]:
    """A 4 x 6 image: big (12 px) given first, small (2 px) inside it, a same-area pair (2 px each) in generator order."""
    big, small, first, second = (np.zeros((4, 6), bool) for _ in range(4))
    big[0:2, 0:6] = True               # area 12, rows 0-1
    small[1, 1:3] = True               # area 2, inside big: big is painted later and wins
    first[3, 0:2] = True               # area 2
    second[3, 1:3] = True              # area 2, overlaps first at (3, 1): equal areas keep order, so second wins
    expected = np.array([[4, 4, 4, 4, 4, 4],
                         [4, 4, 4, 4, 4, 4],
                         [0, 0, 0, 0, 0, 0],
                         [2, 3, 3, 0, 0, 0]])
    return [ann(big), ann(small), ann(first), ann(second)], expected


def test_painting_sorts_by_area_and_later_masks_win():
    anns, expected = hand_case()
    painted = instance_mask_from_annotations(anns, (4, 6))
    assert painted.dtype == torch.int64 and painted.tolist() == expected.tolist()
    assert painted.tolist() == original_painting(anns, 4, 6).tolist()
    assert instance_mask_from_annotations([], (3, 5)).tolist() == [[0] * 5] * 3    # nothing found: all unsegmented
    with pytest.raises(ValueError, match="boolean"):
        instance_mask_from_annotations([{"segmentation": np.ones((2, 2)), "area": 4}], (2, 2))


def test_painting_matches_the_original_on_random_overlaps():
    rng = np.random.default_rng(0)
    anns = [ann(rng.random((9, 11)) < p) for p in rng.uniform(0.05, 0.6, size=12)]
    assert instance_mask_from_annotations(anns, (9, 11)).numpy().tolist() == original_painting(anns, 9, 11).tolist()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_npz_round_trip_and_the_reader_accepts_any_integer(tmp_path):
    mask = torch.tensor([[0, 1, 2], [3, 300, 70000]], dtype=torch.int64)
    written = write_instance_mask(tmp_path, "2007_000033", mask)
    assert written == tmp_path / "2007_000033.npz" and sorted(p.name for p in tmp_path.iterdir()) == ["2007_000033.npz"]
    with np.load(written) as data:
        assert data.files == ["instance_mask"] and data["instance_mask"].dtype == np.int64   # the original paints int64
    back = read_instance_mask(tmp_path, "/data/VOC2012/JPEGImages/2007_000033.jpg")   # found by the image's stem
    assert back.dtype == torch.int64 and torch.equal(back, mask)
    for dtype in (np.uint8, np.int16, np.int32, np.uint16):
        np.savez_compressed(tmp_path / f"x_{dtype.__name__}.npz", instance_mask=np.array([[0, 5], [7, 1]], dtype=dtype))
        assert read_instance_mask(tmp_path, f"x_{dtype.__name__}.png").tolist() == [[0, 5], [7, 1]]
    write_instance_mask(tmp_path, "2007_000033", mask + 1)                      # replaced whole
    assert written.stat().st_mode & 0o777 == 0o666 & ~current_umask()          # the user's usual permissions
    assert torch.equal(read_instance_mask(tmp_path, "2007_000033.jpg"), mask + 1)


def test_reader_refusals_name_the_file_and_the_command(tmp_path):
    with pytest.raises(ProxyCLIPError) as missing:
        read_instance_mask(tmp_path, "images/cat.jpg")
    text = str(missing.value)
    assert str(tmp_path / "cat.npz") in text and "proxyclip-masks" in text and "\n" not in text
    np.savez_compressed(tmp_path / "float.npz", instance_mask=np.zeros((2, 2), np.float32))
    np.savez_compressed(tmp_path / "other.npz", masks=np.zeros((2, 2), np.int64))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    for stem, words in (("float", "integer"), ("other", "no 'instance_mask'"), ("broken", "cannot be read")):
        with pytest.raises(ProxyCLIPError, match=words):
            read_instance_mask(tmp_path, f"{stem}.jpg")
    with pytest.raises(ValueError):
        write_instance_mask(tmp_path, "f", np.zeros((2, 2), np.float32))


def test_missing_sam2_paragraph():
    text = sam2_missing_message()
    assert "pip install .[sam2]" in text and "proxyclip-masks" in text and "\n" not in text


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return SAM2MaskGenerator("sam2_hiera_t", None, points_per_side=2, hydra_overrides=TINY)


def test_tiny_hiera_through_build_sam2(tiny, tmp_path):
    generator = tiny.generator      # sam2's own object, holding the original's settings but the tiny grid
    assert (generator.pred_iou_thresh, generator.stability_score_thresh, generator.point_grids[0].shape) == (0.4, 0.4, (4, 2))
    assert generator.multimask_output is False and tiny.image_size == 1024 and tiny.weights == "random"
    image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mask = tiny(image)
    assert mask.dtype == torch.int64 and mask.shape == (40, 56) and int(mask.min()) >= 0
    # a local checkpoint in Meta's format loads strictly through our loader; one of another architecture is refused
    torch.save({"model": tiny.model.state_dict()}, tmp_path / "tiny.pt")
    again = SAM2MaskGenerator("sam2_hiera_t", str(tmp_path / "tiny.pt"), points_per_side=2, hydra_overrides=TINY)
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(), tiny.model.state_dict().values()))
    torch.save({"model": {k: v for k, v in tiny.model.state_dict().items() if "mask_decoder" not in k}}, tmp_path / "cut.pt")
    with pytest.raises(ProxyCLIPError, match="missing keys"):
        SAM2MaskGenerator("sam2_hiera_t", str(tmp_path / "cut.pt"), points_per_side=2, hydra_overrides=TINY)


def test_generator_paints_what_sam2_returns(tiny, monkeypatch):
    """SAM2AutomaticMaskGenerator's output (random weights find nothing) replaced by a hand-made one: our call gives
    it the image as H x W x 3 uint8 and paints what comes back."""
    anns, expected = hand_case()
    image = torch.arange(3 * 4 * 6, dtype=torch.uint8).reshape(3, 4, 6)
    seen = []

    def generate(array):
        seen.append(array)
        return anns

    monkeypatch.setattr(tiny.generator, "generate", generate)
    assert tiny(image).tolist() == expected.tolist()
    assert seen[0].shape == (4, 6, 3) and seen[0].dtype == np.uint8 and np.array_equal(seen[0], image.permute(1, 2, 0).numpy())


def test_bad_options_refused_in_one_paragraph():
    for kwargs, words in ((dict(points_per_side=0), "points_per_side"), (dict(pred_iou_thresh=1.5), "pred_iou_thresh"),
                          (dict(stability_score_thresh=-0.1), "stability_score_thresh"), (dict(model="sam3"), "sam2_hiera_l")):
        with pytest.raises(ProxyCLIPError, match=words) as refused:
            SAM2MaskGenerator(checkpoint=None, **kwargs)
        assert "\n" not in str(refused.value)
    assert set(SAM2_MODELS) == {"sam2_hiera_t", "sam2_hiera_s", "sam2_hiera_b+", "sam2_hiera_l"}


def test_half_needs_cuda(tiny):
    tiny.half = True
    try:
        with pytest.raises(ProxyCLIPError, match="CUDA"):
            tiny(torch.zeros(3, 8, 8, dtype=torch.uint8))
    finally:
        tiny.half = False


# ---- proxyclip-masks ------------------------------------------------------------------------------------------------

def masks(argv, capsys):
    from proxyclip.commands.masks import main

    tiny_args = ["--model", "sam2_hiera_t", "--checkpoint", "random", "--points_per_side", "2", "--accelerator", "cpu"]
    code = main([*tiny_args, *[f"--hydra_override={o}" for o in TINY], *argv])   # argv last: its values win
    out, err = capsys.readouterr()
    return code, out, err


def test_masks_command_on_a_benchmark_layout_resumes(tmp_path, capsys):
    root = write_voc(tmp_path / "data", n=3)
    output = tmp_path / "masks"
    code, out, err = masks(["--config", "configs/voc21.yaml", "--root", str(root), "--output", str(output)], capsys)
    assert code == 0, err
    assert "0 of 3 images already have masks" in out and "3 to do" in out and "wrote 3 masks" in out
    ids = (root / "ImageSets/Segmentation/val.txt").read_text().split()
    assert sorted(p.name for p in output.iterdir()) == sorted(f"{i}.npz" for i in ids)     # nothing else left behind
    from PIL import Image
    for i in ids:                  # each mask at its original file's full size
        w, h = Image.open(root / "JPEGImages" / f"{i}.jpg").size
        assert read_instance_mask(output, f"{i}.jpg").shape == (h, w)
    code, out, err = masks(["--config", "configs/voc21.yaml", "--root", str(root), "--output", str(output)], capsys)
    assert code == 0 and "3 of 3 images already have masks" in out and "0 to do" in out and "wrote" in out


def test_masks_command_on_a_folder_lists_the_unreadable_image(tmp_path, capsys):
    from PIL import Image
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.full((30, 44, 3), 90, np.uint8)).save(folder / "a.png")
    Image.fromarray(np.full((41, 23, 3), 200, np.uint8)).save(folder / "sub" / "b.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    output = tmp_path / "out"
    code, out, err = masks(["--images", str(folder), "--output", str(output)], capsys)
    assert code == 1 and "wrote 2 masks" in out
    assert "1 image could not be done" in err and str(folder / "broken.jpg") in err
    assert sorted(p.name for p in output.iterdir()) == ["a.npz", "b.npz"]
    assert read_instance_mask(output, "b.jpg").shape == (41, 23)
    code, out, err = masks(["--images", str(folder), "--output", str(output)], capsys)
    assert code == 1 and "2 of 3 images already have masks" in out and "1 to do" in out and "broken.jpg" in err


def test_masks_command_refusals_before_any_model(tmp_path, capsys):
    from PIL import Image
    (tmp_path / "empty").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a" / "x.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "b" / "x.png")
    (tmp_path / "file").write_text("")
    cases = ((["--images", str(tmp_path / "empty"), "--output", str(tmp_path / "o1")], "No images"),
             (["--images", str(tmp_path / "a"), "--output", str(tmp_path / "file" / "sub")], "cannot be written"),
             (["--images", str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(tmp_path / "o2")], "share a file stem"),
             (["--config", "configs/voc21.yaml", "--root", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o3")],
              "does not exist"),
             (["--images", str(tmp_path / "a"), "--output", str(tmp_path / "o4"), "--points_per_side", "0"], "points_per_side"),
             (["--images", str(tmp_path / "a"), "--output", str(tmp_path / "o5"), "--half"], "needs a CUDA GPU"),
             (["--images", str(tmp_path / "a"), "--output", str(tmp_path / "o6"), "--devices", "0"], "Lightning cannot run"))
    for argv, words in cases:
        code, out, err = masks(argv, capsys)
        assert code == 2 and words in err and err.startswith("error: ") and err.count("\n") == 1, (argv, err)
        assert "Predicting" not in out + err     # refused before the Trainer ran


def test_several_processes_share_the_images_each_once():
    """Under DDP (any number of devices and nodes) the images are split by Lightning's UnrepeatedDistributedSampler:
    every image to exactly one process, none repeated to even out the shares (5 images, 3 processes)."""
    from types import SimpleNamespace

    from proxyclip.commands.masks import lightning_pieces

    ToDo, _ = lightning_pieces()
    paths = [f"img{i}.jpg" for i in range(5)]
    shares = []
    for rank in range(3):
        data = ToDo(paths, num_workers=0)
        data.trainer = SimpleNamespace(world_size=3, global_rank=rank)
        shares.append([paths[i] for i in data.predict_dataloader().sampler])
    assert sorted(sum(shares, [])) == paths and [len(s) for s in shares] == [2, 2, 1]


def test_masks_command_without_sam2_names_the_extra(tmp_path, capsys, monkeypatch):
    from PIL import Image
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")
    monkeypatch.setitem(sys.modules, "sam2.build_sam", None)          # as if the extra were not installed
    code, out, err = masks(["--images", str(tmp_path / "x.png"), "--output", str(tmp_path / "o")], capsys)
    assert code == 2 and err == f"error: {sam2_missing_message()}\n" and "1 to do" in out
    assert list((tmp_path / "o").iterdir()) == []


def test_masks_command_offline_names_the_sam2_fix(tmp_path, capsys, monkeypatch):
    """No network and nothing cached: the paragraph says how to get SAM 2's checkpoint (proxyclip-weights download
    <the SAM 2 model> elsewhere, or --checkpoint FILE), never a model config's CLIP / VFM advice."""
    import urllib.error
    from PIL import Image

    from proxyclip.commands.masks import main

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x.png")

    def offline(*args, **kwargs):                          # torch.hub's download, as it fails without network
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    code = main(["--images", str(tmp_path / "x.png"), "--output", str(tmp_path / "o"), "--model", "sam2_hiera_t",
                 "--points_per_side", "2", "--accelerator", "cpu", *[f"--hydra_override={o}" for o in TINY]])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: Cannot fetch the pretrained weights of SAM 2 Hiera-T") and err.count("\n") == 1
    assert "`proxyclip-weights download sam2_hiera_t`" in err and "`--checkpoint FILE`" in err
    assert SAM2_MODELS["sam2_hiera_t"].url in err
    for other in ("configs/model", "clip_pretrained", "vfm_pretrained", "method_kwargs"):
        assert other not in err, other
