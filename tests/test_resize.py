"""mmcv's keep-ratio resize and the OpenCV image decode."""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from datamodules.errors import DataError
from datamodules.io import jpeg_is_complete, read_image, read_label
from datamodules.transforms import A, KeepRatioResize, rescale_size


def mmcv_rescale_size(old_size, scale):
    """mmcv.image.geometric.rescale_size for a tuple scale, restated: (w, h) -> (new_w, new_h)."""
    w, h = old_size
    max_long_edge, max_short_edge = max(scale), min(scale)
    scale_factor = min(max_long_edge / max(h, w), max_short_edge / min(h, w))
    return int(w * float(scale_factor) + 0.5), int(h * float(scale_factor) + 0.5)


@pytest.mark.parametrize("scale", [(2048, 336), (2048, 448), (336, 2048), (512, 512)])
def test_sizes_follow_the_formula(scale):
    rng = np.random.default_rng(sum(scale))
    shapes = [(int(h), int(w)) for h, w in rng.integers(1, 4000, size=(1500, 2))]
    shapes += [(375, 500), (500, 375), (1024, 2048), (336, 336), (1, 1), (1, 3000), (2048, 336), (683, 1024)]
    for h, w in shapes:
        new_w, new_h = mmcv_rescale_size((w, h), scale)
        assert rescale_size(h, w, *scale) == (new_h, new_w), (h, w)


def test_known_sizes():
    assert rescale_size(375, 500, 2048, 336) == (336, 448)  # VOC-like: short side to 336
    assert rescale_size(1024, 2048, 2048, 448) == (448, 896)  # Cityscapes
    assert rescale_size(100, 3000, 2048, 336) == (68, 2048)  # long side bound wins
    assert rescale_size(37, 53, 2048, 336) == (336, 481)  # small images are enlarged


def test_pixels_equal_cv2_resize():
    rng = np.random.default_rng(0)
    transform = A.Compose([KeepRatioResize(2048, 336)])
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(20, 700, size=2))
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        new_h, new_w = rescale_size(h, w, 2048, 336)
        out = transform(image=img)["image"]
        assert out.dtype == np.uint8 and out.shape == (new_h, new_w, 3)
        assert np.array_equal(out, cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR))
    img = rng.integers(0, 256, size=(336, 400, 3), dtype=np.uint8)  # already at size
    assert np.array_equal(KeepRatioResize(2048, 336)(image=img)["image"], img)
    assert KeepRatioResize(2048, 336).get_transform_init_args() == {"long": 2048, "short": 336}


def _rgb_reference(path):
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_read_image_is_opencv_rgb(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, size=(41, 67, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)  # lossless: RGB order kept
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=90)
    assert np.array_equal(read_image(tmp_path / "a.jpg"), _rgb_reference(tmp_path / "a.jpg"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 -> OpenCV applies it, as in the original harness
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif)
    assert np.array_equal(read_image(tmp_path / "rot.jpg"), _rgb_reference(tmp_path / "rot.jpg"))
    assert read_image(tmp_path / "rot.jpg").shape == (67, 41, 3)


def test_odd_inputs_become_8bit_rgb(tmp_path):
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, size=(30, 50), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    out = read_image(tmp_path / "gray.png")
    assert out.dtype == np.uint8 and out.shape == (30, 50, 3)
    assert np.array_equal(out, np.repeat(gray[..., None], 3, axis=2))

    rgba = rng.integers(0, 256, size=(30, 50, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    assert out.shape == (30, 50, 3) and np.array_equal(out, rgba[..., :3])  # alpha dropped

    rgb16 = rng.integers(0, 65536, size=(30, 50, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    out = read_image(tmp_path / "rgb16.png")
    assert out.dtype == np.uint8 and out.shape == (30, 50, 3)
    assert np.array_equal(out, (rgb16 >> 8).astype(np.uint8))

    gray16 = rng.integers(0, 65536, size=(30, 50), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "gray16.png"), gray16)
    out = read_image(tmp_path / "gray16.png")
    assert out.dtype == np.uint8 and np.array_equal(out, np.repeat((gray16 >> 8).astype(np.uint8)[..., None], 3, 2))

    pal = Image.fromarray(rng.integers(0, 4, size=(30, 50), dtype=np.uint8), mode="P")
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] + [0] * 756)
    pal.save(tmp_path / "pal.png")
    out = read_image(tmp_path / "pal.png")  # images are decoded to colours (labels are not)
    assert out.shape == (30, 50, 3) and set(map(tuple, out.reshape(-1, 3))) <= {(255, 0, 0), (0, 255, 0),
                                                                                (0, 0, 255), (9, 9, 9)}

    Image.fromarray(rgba[..., :3]).convert("CMYK").save(tmp_path / "cmyk.jpg")
    out = read_image(tmp_path / "cmyk.jpg")
    assert out.dtype == np.uint8 and out.shape == (30, 50, 3)


def test_labels_read_unchanged(tmp_path):
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 21, size=(20, 30), dtype=np.uint8)
    idx[0, 0] = 255
    pal = Image.fromarray(idx, mode="P")
    pal.putpalette(list(range(256)) * 3)
    pal.save(tmp_path / "pal.png")
    assert np.array_equal(read_label(tmp_path / "pal.png"), idx)  # indices, not colours
    big = rng.integers(0, 65536, size=(20, 30)).astype(np.uint16)
    big[0, :3] = [255, 846, 65535]
    Image.fromarray(big).save(tmp_path / "l.tif")
    cv2.imwrite(str(tmp_path / "c.tif"), big)  # LZW-compressed by OpenCV
    for name in ("l.tif", "c.tif"):
        out = read_label(tmp_path / name)
        assert out.dtype == np.uint16 and np.array_equal(out, big)


def _minimal_jpeg(tmp_path, progressive=False):
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
    path = tmp_path / ("p.jpg" if progressive else "b.jpg")
    Image.fromarray(img).save(path, quality=90, progressive=progressive)
    return path.read_bytes()


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_detection(tmp_path, progressive):
    data = _minimal_jpeg(tmp_path, progressive)
    assert jpeg_is_complete(data)
    assert jpeg_is_complete(data + b"\x00" * 50 + b"trailing junk")  # bytes after EOI are fine
    for cut in (len(data) - 2, len(data) - 1, len(data) // 2, 200, 10):
        assert not jpeg_is_complete(data[:cut]), cut
    # An APP1 segment (EXIF thumbnail) holding its own EOI must not count as the end.
    payload = b"Exif\x00\x00" + b"\xff\xd8\xff\xd9"
    with_app1 = data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]
    assert jpeg_is_complete(with_app1)
    assert not jpeg_is_complete(with_app1[: len(with_app1) // 2])
    path = tmp_path / "cut.jpg"
    path.write_bytes(with_app1[: len(with_app1) // 2])
    with pytest.raises(DataError, match="truncated"):
        read_image(path)


def test_unreadable_files_name_the_file(tmp_path):
    for name, content in (("empty.jpg", b""), ("junk.png", b"not an image at all")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match=name):
            read_image(tmp_path / name)
        with pytest.raises(DataError, match=name):
            read_label(tmp_path / name)
    with pytest.raises(DataError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(DataError, match="missing.png"):
        read_label(tmp_path / "missing.png")
