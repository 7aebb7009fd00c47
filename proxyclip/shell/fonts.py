"""Which font draws a text: one that has every character of it, among those the installed packages ship.

PIL's own: Aileron (its default FreeType font, 10 px: ASCII and a few signs) and its bitmap font (11 px: all of
Latin-1); matplotlib's DejaVu Sans (Latin, Greek, Cyrillic) when matplotlib is installed. A character none of them
has is drawn as "?", never as an empty box, and `font_note` says so once per run.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Iterable, Sequence

from PIL import ImageFont


@functools.lru_cache(maxsize=None)
def _fonts() -> tuple:
    """The fonts to choose from, in order of preference (the first that has every character of a text wins)."""
    fonts = [ImageFont.load_default()]                 # PIL's FreeType font (Aileron, 10 px): ASCII and a few signs
    matplotlib = importlib.util.find_spec("matplotlib")
    dejavu = Path(matplotlib.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf" if matplotlib else None
    if dejavu is not None and dejavu.is_file():
        try:
            fonts.append(ImageFont.truetype(str(dejavu), 10))
        except (OSError, ImportError):                 # a PIL built without FreeType
            pass
    fonts.append(ImageFont.load_default_imagefont())   # PIL's bitmap font (11 px): all of Latin-1
    return tuple(fonts)


@functools.lru_cache(maxsize=None)
def _has_glyph(font_index: int, char: str) -> bool:
    font = _fonts()[font_index]
    if char.isspace():
        return True
    if not isinstance(font, ImageFont.FreeTypeFont):   # the bitmap font: Latin-1, one glyph per printable byte
        return ord(char) < 256 and char.isprintable()
    missing = bytes(font.getmask("\U0010ffff"))       # a code point no font maps: its "missing glyph" box
    return bytes(font.getmask(char)) != missing


def text_font(texts: Iterable[str]) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """The preferred font among those that draw the most distinct characters of `texts` (all of them, if one can)."""
    chars = set("".join(texts))
    coverage = [sum(_has_glyph(i, c) for c in chars) for i in range(len(_fonts()))]
    return _fonts()[coverage.index(max(coverage))]


def drawable(text: str, font) -> str:
    """`text` with every character `font` has no glyph for replaced by "?"."""
    index = _fonts().index(font)
    return "".join(c if _has_glyph(index, c) else "?" for c in text)


def undrawable(texts: Iterable[str]) -> list[str]:
    """The characters of `texts` that no available font can draw, sorted."""
    return sorted({c for c in "".join(texts) if not any(_has_glyph(i, c) for i in range(len(_fonts())))})


def font_note(names: Sequence[str]) -> str | None:
    """One line for the run's output when some of `names` hold characters no available font draws, else None."""
    missing = undrawable(names)
    if not missing:
        return None
    having = [n for n in names if any(c in n for c in missing)]
    dejavu = any("DejaVu" in str(getattr(font, "path", "")) for font in _fonts())
    hint = "" if dejavu else " (installing matplotlib adds DejaVu Sans, which draws Latin, Greek and Cyrillic)"
    return (f"note: no installed font draws {' '.join(missing)} (in {', '.join(repr(n) for n in having[:3])}"
            f"{', ...' if len(having) > 3 else ''}); the pictures show '?' for them, the files keep the names{hint}.")
