"""Tiny fake copies of the ten benchmarks' on-disk layouts (random pixels, random labels).

Each writer takes a folder, writes the real layout into it and returns the `root` to put in the
data config (`--data.init_args.root <root>`). `WRITERS` maps the ten config names to them; the
several benchmarks that share a layout share a writer (VOC21/VOC20, Context60/59/459, the two COCO).

Images have odd sizes (37x53 to 120x90, portrait and landscape); labels hold every kind of value the
real files hold: the class range's two ends, ignore pixels (255, or 65535 in the .tif sets, where
255 is an ordinary class) and, for the reduce-zero sets, the 0 that becomes ignore.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

# (H, W) of the fake images, cycled.
SIZES = [(37, 53), (90, 120), (120, 90), (53, 37), (64, 64), (45, 101), (77, 41)]
N_IMAGES = 6


def _image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth-ish random RGB (noise on a gradient), so JPEG keeps it close."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) % 256], axis=-1)
    noise = rng.integers(0, 60, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _labels(rng: np.random.Generator, h: int, w: int, num_values: int, specials: tuple[int, ...] = (),
            dtype=np.uint8) -> np.ndarray:
    """Random values in [0, num_values - 1], with both ends and each special value planted."""
    label = rng.integers(0, num_values, size=(h, w)).astype(dtype)
    label[0, 0] = 0
    label[0, 1] = num_values - 1
    for k, value in enumerate(specials):
        label[1 + k % (h - 1), 2:6] = value
    return label


def _save_jpg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="JPEG", quality=95)


def _save_png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, format="PNG")


def _save_palette_png(path: Path, label: np.ndarray) -> None:
    """A palette PNG like VOC's SegmentationClass: pixel values are indices into the VOC colour map."""
    path.parent.mkdir(parents=True, exist_ok=True)
    palette = []
    for i in range(256):  # the VOC colour map (bit-interleaved)
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    img = Image.fromarray(label.astype(np.uint8), mode="P")
    img.putpalette(palette)
    img.save(path, format="PNG")


def _save_tif_u16(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint16)).save(path, format="TIFF")


def _size(i: int) -> tuple[int, int]:
    return SIZES[i % len(SIZES)]


def write_voc(folder: Path, n: int = N_IMAGES, seed: int = 0) -> Path:
    """`VOCdevkit/VOC2012`: JPEGImages, palette SegmentationClass (0..20, 255), val.txt (+ a train label)."""
    rng = np.random.default_rng(seed)
    root = Path(folder) / "VOCdevkit" / "VOC2012"
    ids = [f"2007_{i:06d}" for i in range(n)]
    for i, sid in enumerate(ids + ["2008_train0"]):
        h, w = _size(i)
        _save_jpg(root / "JPEGImages" / f"{sid}.jpg", _image(rng, h, w))
        _save_palette_png(root / "SegmentationClass" / f"{sid}.png", _labels(rng, h, w, 21, (255,)))
    split = root / "ImageSets" / "Segmentation" / "val.txt"
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text("\n".join(ids) + "\n")
    (split.parent / "train.txt").write_text("2008_train0\n")
    return root


def write_context(folder: Path, n: int = N_IMAGES, seed: int = 1) -> Path:
    """`VOCdevkit/VOC2010`: JPEGImages, SegmentationClassContext (0..59), the PC459 .tif labels
    (uint16 0..458 with 255 as a class and 65535 ignore) and SegmentationContext/val.txt."""
    rng = np.random.default_rng(seed)
    root = Path(folder) / "VOCdevkit" / "VOC2010"
    ids = [f"2008_{i:06d}" for i in range(n)]
    for i, sid in enumerate(ids):
        h, w = _size(i + 1)
        _save_jpg(root / "JPEGImages" / f"{sid}.jpg", _image(rng, h, w))
        _save_png(root / "SegmentationClassContext" / f"{sid}.png", _labels(rng, h, w, 60))
        _save_tif_u16(root / "annotations_detectron2" / "pc459_val" / f"{sid}.tif",
                      _labels(rng, h, w, 459, (255, 65535), dtype=np.uint16))
    split = root / "ImageSets" / "SegmentationContext" / "val.txt"
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text("\n".join(ids) + "\n")
    return root


def coco_raw_map(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A raw COCO-Stuff-164k map: things 0..90 (COCO id - 1, used ids only), stuff 91..181, 255."""
    used_things = [c - 1 for c in range(1, 91) if c not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    values = np.array(used_things + list(range(91, 182)) + [255], dtype=np.uint8)
    raw = values[rng.integers(0, len(values), size=(h, w))]
    raw[0, :4] = [0, 89, 91, 181]
    return raw


def write_coco(folder: Path, n: int = N_IMAGES, seed: int = 2) -> Path:
    """`coco_stuff164k`: images/val2017, annotations/val2017 with the raw maps, *_labelTrainIds.png
    (0..170, 255) and *_instanceTrainIds.png (0..80)."""
    rng = np.random.default_rng(seed)
    root = Path(folder) / "coco_stuff164k"
    for i in range(n):
        sid = f"{139 + 146 * i:012d}"
        h, w = _size(i + 2)
        _save_jpg(root / "images" / "val2017" / f"{sid}.jpg", _image(rng, h, w))
        ann = root / "annotations" / "val2017"
        _save_png(ann / f"{sid}.png", coco_raw_map(rng, h, w))
        _save_png(ann / f"{sid}_labelTrainIds.png", _labels(rng, h, w, 171, (255,)))
        _save_png(ann / f"{sid}_instanceTrainIds.png", _labels(rng, h, w, 81))
    return root


def write_ade20k(folder: Path, n: int = N_IMAGES, seed: int = 3) -> Path:
    """`ADEChallengeData2016`: images/validation, annotations/validation (0 = other, 1..150)."""
    rng = np.random.default_rng(seed)
    root = Path(folder) / "ADEChallengeData2016"
    for i in range(n):
        sid = f"ADE_val_{i + 1:08d}"
        h, w = _size(i + 3)
        _save_jpg(root / "images" / "validation" / f"{sid}.jpg", _image(rng, h, w))
        _save_png(root / "annotations" / "validation" / f"{sid}.png", _labels(rng, h, w, 151))
    return root


def write_ade847(folder: Path, n: int = N_IMAGES, seed: int = 4) -> Path:
    """`ADE20K_2021_17_01`: images_detectron2/validation, annotations_detectron2/validation .tif
    (uint16 0..846, 255 a class, 65535 ignore)."""
    rng = np.random.default_rng(seed)
    root = Path(folder) / "ADE20K_2021_17_01"
    for i in range(n):
        sid = f"ADE_val_{i + 1:08d}"
        h, w = _size(i + 4)
        _save_jpg(root / "images_detectron2" / "validation" / f"{sid}.jpg", _image(rng, h, w))
        _save_tif_u16(root / "annotations_detectron2" / "validation" / f"{sid}.tif",
                      _labels(rng, h, w, 847, (255, 65535), dtype=np.uint16))
    return root


def cityscapes_label_ids(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A raw *_gtFine_labelIds.png map: label ids 0..33."""
    raw = rng.integers(0, 34, size=(h, w)).astype(np.uint8)
    raw[0, :3] = [0, 7, 33]
    return raw


def write_cityscapes(folder: Path, n: int = N_IMAGES, seed: int = 5) -> Path:
    """`cityscapes`: leftImg8bit/val/<city>/*_leftImg8bit.png (RGB PNG), gtFine/val/<city>/ with
    *_gtFine_labelIds.png (raw ids) and *_gtFine_labelTrainIds.png (0..18, 255), two cities."""
    rng = np.random.default_rng(seed)
    root = Path(folder) / "cityscapes"
    for i in range(n):
        city = ("frankfurt", "lindau")[i % 2]
        stem = f"{city}_{i:06d}_000019"
        h, w = _size(i + 5)
        _save_png(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png", _image(rng, h, w))
        gt = root / "gtFine" / "val" / city
        _save_png(gt / f"{stem}_gtFine_labelIds.png", cityscapes_label_ids(rng, h, w))
        _save_png(gt / f"{stem}_gtFine_labelTrainIds.png", _labels(rng, h, w, 19, (255,)))
    return root


#: config name (configs/data/<name>.yaml) -> writer(folder) -> root
WRITERS: dict[str, Callable[..., Path]] = {
    "voc21": write_voc,
    "voc20": write_voc,
    "context60": write_context,
    "context59": write_context,
    "pc459": write_context,
    "coco_object": write_coco,
    "coco_stuff": write_coco,
    "cityscapes": write_cityscapes,
    "ade20k": write_ade20k,
    "ade847": write_ade847,
}
