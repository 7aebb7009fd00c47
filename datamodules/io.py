"""Reading images and label maps the way the original (mmseg) harness does.

* Images: OpenCV with `IMREAD_COLOR` (what `mmcv.imfrombytes`, i.e. `cv2.imread`, does), then BGR ->
  RGB. Grayscale, RGBA (alpha dropped), 16-bit (value >> 8), palette and CMYK files all come back as
  3-channel 8-bit RGB; the EXIF orientation is applied, as OpenCV does.
* Labels: PIL (mmseg's `LoadAnnotations` default backend), unchanged: a palette PNG gives its
  indices, not its colours; a 16-bit `.tif` keeps its uint16 values losslessly.

Unreadable, empty and truncated files raise `DataError` naming the file.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .errors import DataError

__all__ = ["read_image", "read_label", "jpeg_is_complete"]

_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0..RST7: markers without a length field


def jpeg_is_complete(data: bytes | np.ndarray) -> bool:
    """Whether a JPEG byte stream reaches its end-of-image marker (EOI, FF D9).

    OpenCV decodes a truncated JPEG without an error (it fills the missing rows with grey and
    prints a warning), so truncation is detected here by walking the marker segments: segment
    headers are skipped by their lengths (so an EXIF thumbnail's EOI does not count) and
    entropy-coded data is scanned for the next marker. Trailing bytes after EOI are allowed.
    """
    buf = bytes(data) if isinstance(data, np.ndarray) else data
    n = len(buf)
    if n < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return False
    pos = 2
    while pos < n:
        # Next marker: skip anything that is not 0xFF (libjpeg tolerates extraneous bytes), then fill bytes.
        pos = buf.find(b"\xff", pos)
        if pos < 0:
            return False
        while pos < n and buf[pos] == 0xFF:
            pos += 1
        if pos >= n:
            return False
        marker = buf[pos]
        pos += 1
        if marker == 0x00:  # a stuffed 0xFF byte, not a marker
            continue
        if marker == 0xD9:
            return True
        if marker in _JPEG_STANDALONE:
            continue
        if pos + 2 > n:
            return False
        length = (buf[pos] << 8) | buf[pos + 1]
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data follows until the next real marker
            while True:
                pos = buf.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return False
                following = buf[pos + 1]
                if following == 0x00 or following == 0xFF or 0xD0 <= following <= 0xD7:
                    pos += 1 if following == 0xFF else 2
                    continue
                break
    return False


def _read_bytes(path: str | os.PathLike, what: str) -> np.ndarray:
    try:
        data = np.fromfile(os.fspath(path), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"The {what} file {path} does not exist. Check the dataset's `root` and its layout "
                        f"(see `python -m datamodules.prepare check --help`).") from None
    except OSError as exc:
        raise DataError(f"The {what} file {path} cannot be read ({exc}). Check its permissions, or "
                        f"re-download it.") from None
    if data.size == 0:
        raise DataError(f"The {what} file {path} is empty (0 bytes). Re-download or re-extract it.")
    return data


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The image at `path` as uint8 RGB, shape [H, W, 3], decoded by OpenCV with `IMREAD_COLOR`."""
    data = _read_bytes(path, "image")
    if data[:2].tobytes() == b"\xff\xd8" and not jpeg_is_complete(data):
        raise DataError(f"The image {path} is a truncated JPEG (it ends before its end-of-image "
                        f"marker, so part of it would decode as grey). Re-download or re-extract it.")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"The image {path} cannot be decoded by OpenCV (corrupt, truncated or not an "
                        f"image). Re-download or re-extract it.")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label(path: str | os.PathLike) -> np.ndarray:
    """The label map at `path`, shape [H, W], values unchanged (palette indices, uint16 for .tif)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"The label file {path} does not exist. Check the dataset's `root` and its layout "
                        f"(see `python -m datamodules.prepare check --help`).")
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.array(img)
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        arr = None
        if path.suffix.lower() in (".tif", ".tiff"):  # a TIFF flavour PIL lacks: let OpenCV try
            arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise DataError(f"The label file {path} cannot be read ({type(exc).__name__}: {exc}); it is "
                            f"corrupt or truncated. Re-download it or re-run its preparation.") from None
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.ndim != 2:
        raise DataError(f"The label file {path} has shape {arr.shape}; a label map must be a single-channel "
                        f"image of class indices (a palette or grayscale PNG, or a 16-bit TIFF), not a colour "
                        f"rendering. Use the dataset's official class-index annotations.")
    if arr.dtype.kind not in "ui":
        raise DataError(f"The label file {path} holds {arr.dtype} values; class indices must be integers.")
    return arr
