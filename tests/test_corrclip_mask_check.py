"""CorrCLIP's region masks are checked before any model is built (CorrCLIP declares them, `LastBlock.image_files`; proxyclip/commands/image_files_check.py checks them): every
image's `<stem>.npz` in `instance_mask_path` present, readable and of the size the run compares it with, and every
bad one named in one paragraph (exit 2). Through `cli_main` in this process, on the fake VOC layout and on `predict`'s
own images, with CorrCLIP's preset (tiny CLIP and DINO); the repaired folders then run."""
from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT
from proxyclip.commands.cli import ProxyCLIPCLI, cli_main
from proxyclip.errors import ProxyCLIPError
from proxyclip.methods.corrclip.sam2_masks import read_instance_mask
from test_corrclip import region_image, tiny_corrclip_preset, write_masks


@pytest.fixture
def built(monkeypatch):
    """The runs whose classes (datamodule, model) were instantiated: the real instantiation, recorded."""
    runs, instantiate = [], ProxyCLIPCLI.instantiate_classes

    def recorded(cli):
        runs.append(cli.subcommand)
        return instantiate(cli)

    monkeypatch.setattr(ProxyCLIPCLI, "instantiate_classes", recorded)
    return runs


def refused(args, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main(args)
    assert stop.value.code == 2
    return capsys.readouterr().err


def voc_test(root, masks, out, tmp_path):
    return ["test", "--config", "configs/voc21.yaml", "--model", str(tiny_corrclip_preset(tmp_path)),
            "--model.segmentor.method_kwargs", json.dumps({"instance_mask_path": str(masks)}),
            "--data.init_args.root", str(root), "--model.output_dir", str(out), "--trainer.logger", "false",
            "--data.init_args.scale", "[400, 60]"]


def corrupt(path):
    """Flip a byte in the middle of the zip member's data: the zip opens, its CRC does not match."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("instance_mask.npy")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_every_bad_mask_is_named_before_any_model_is_built(tmp_path, capsys, built):
    from fake_datasets import WRITERS

    root = WRITERS["voc21"](tmp_path / "data", n=5)
    masks, out = tmp_path / "masks", tmp_path / "out"
    write_masks(root, masks)
    (masks / "2007_000000.npz").unlink()                                            # missing
    h, w = np.load(masks / "2007_000001.npz")["instance_mask"].shape
    np.savez(masks / "2007_000001.npz", instance_mask=region_image(h, w + 1).numpy())   # one column too many
    truncated = (masks / "2007_000002.npz").read_bytes()
    (masks / "2007_000002.npz").write_bytes(truncated[: len(truncated) // 2])      # an interrupted copy
    corrupt(masks / "2007_000003.npz")                                              # a damaged one

    err = refused(voc_test(root, masks, out, tmp_path), capsys)
    assert built == [] and not out.exists()                                         # nothing was built or written
    assert f"4 of the 5 region masks CorrCLIP would read from {masks}" in err
    assert "(2 unreadable, 1 of the wrong size, 1 missing)" in err
    assert err.index("2007_000003.npz") < err.index("2007_000001.npz") < err.index("2007_000000.npz")  # to delete first
    assert "2007_000000.npz is absent" in err
    assert f"2007_000001.npz is {h}x{w + 1} (HxW) but its image {root / 'JPEGImages' / '2007_000001.jpg'} is {h}x{w}" in err
    assert "2007_000002.npz cannot be read" in err and "2007_000003.npz cannot be read (Bad CRC-32" in err
    assert "2007_000004" not in err
    assert f"proxyclip-masks --config configs/voc21.yaml --root {root} --output {masks}" in err

    shutil.rmtree(masks)
    write_masks(root, masks)
    cli_main(voc_test(root, masks, out, tmp_path))
    assert built == ["test"] and json.loads((out / "metrics.json").read_text())["num_images"] == 5


def test_the_run_reader_refuses_damaged_files_in_one_paragraph(tmp_path):
    """A truncated or corrupt npz was a zipfile traceback in the middle of the run; now the reader's paragraph."""
    np.savez_compressed(tmp_path / "cut.npz", instance_mask=region_image(40, 50).numpy())
    np.savez_compressed(tmp_path / "flip.npz", instance_mask=region_image(40, 50).numpy())
    (tmp_path / "cut.npz").write_bytes((tmp_path / "cut.npz").read_bytes()[:-30])
    corrupt(tmp_path / "flip.npz")
    for stem in ("cut", "flip"):
        with pytest.raises(ProxyCLIPError, match=f"{stem}.npz cannot be read .*proxyclip-masks"):
            read_instance_mask(tmp_path, f"images/{stem}.jpg")


def test_predict_masks_have_the_size_of_the_image_as_decoded(tmp_path, capsys, built):
    """An image with an EXIF rotation is segmented as OpenCV decodes it (turned): its mask must be turned too."""
    rgb = np.random.default_rng(0).integers(0, 256, size=(30, 44, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6                                                                 # rotate 90: 44 x 30 decoded
    Image.fromarray(rgb).save(tmp_path / "turned.jpg", exif=exif)
    Image.fromarray(rgb).save(tmp_path / "plain.png")
    masks, out = tmp_path / "masks", tmp_path / "out"
    masks.mkdir()
    for stem, (h, w) in (("turned", (30, 44)), ("plain", (30, 44))):                 # the file's own header size
        np.savez(masks / f"{stem}.npz", instance_mask=region_image(h, w).numpy())
    args = ["predict", "--config", str(REPO_ROOT / "configs/demo.yaml"), "--model", str(tiny_corrclip_preset(tmp_path)),
            "--model.segmentor.method_kwargs", json.dumps({"instance_mask_path": str(masks)}),
            "--data.init_args.inputs", str(tmp_path / "*.*g"), "--prediction_writer.output_dir", str(out),
            "--trainer.logger", "false"]
    err = refused(args, capsys)
    assert built == [] and "1 of the 2 region masks" in err and "(1 of the wrong size)" in err
    assert f"turned.npz is 30x44 (HxW) but its image {tmp_path / 'turned.jpg'} is 44x30" in err
    assert f"proxyclip-masks --images '{tmp_path / '*.*g'}' --output {masks}" in err

    np.savez(masks / "turned.npz", instance_mask=region_image(44, 30).numpy())
    cli_main(args)
    assert built == ["predict"] and Image.open(out / "turned_labels.png").size == (30, 44)


def test_a_missing_folder_is_one_sentence_and_sam2_masks_are_not_read(tmp_path, capsys, built):
    from fake_datasets import WRITERS
    from proxyclip.commands.image_files_check import image_files_of

    def mask_folder(config):
        files = image_files_of(config)
        return None if files is None else files.folder

    root = WRITERS["voc21"](tmp_path / "data", n=2)
    err = refused(voc_test(root, tmp_path / "nowhere", tmp_path / "out", tmp_path), capsys)
    error = err[err.index("error: "):].strip()
    assert built == [] and error.startswith(f"error: The region-mask folder {tmp_path / 'nowhere'} (CorrCLIP's")
    assert "does not exist" in error and "proxyclip-masks --config configs/voc21.yaml" in error and "\n" not in error
    segmentor = {"method": "corrclip", "method_kwargs": {"instance_mask_path": "m", "mask_generator": "sam2"}}
    assert mask_folder({"model": {"segmentor": {"init_args": segmentor}}}) is None    # SAM 2 makes them per image
    segmentor["method_kwargs"]["mask_generator"] = None
    assert mask_folder({"model": {"segmentor": {"init_args": segmentor}}}) == "m"
    assert mask_folder({"model": {"segmentor": {"init_args": {"method": "proxyclip"}}}}) is None
