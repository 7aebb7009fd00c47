"""Vocabulary files: the packaged benchmark vocabularies, or a file of the user's (one class per line).

`class_names/<benchmark>.txt` are ProxyCLIP's (the original setup's, verbatim); `class_names/<method>/<benchmark>.txt`
are another method's where its repository's file differs (its synonyms written with our "; "): SCLIP's (which
NACLIP's repository repeats byte for byte) and ClearCLIP's.
"""
from __future__ import annotations

import re
from pathlib import Path

from .errors import DataError

PACKAGED_VOCABULARIES = Path(__file__).resolve().parent / "class_names"


def packaged_names() -> list[str]:
    return sorted(p.relative_to(PACKAGED_VOCABULARIES).with_suffix("").as_posix() for p in PACKAGED_VOCABULARIES.rglob("*.txt"))


def resolve_names_file(value: str) -> Path:
    """A packaged vocabulary name (`voc21`, `voc21.txt`, `sclip/voc21`) or a path to a vocabulary file."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    stem = value[:-4] if value.endswith(".txt") else value
    if stem in packaged_names():
        return PACKAGED_VOCABULARIES / f"{stem}.txt"
    names = ", ".join(packaged_names())
    raise DataError(f"names_file {value!r} is neither an existing file (looked for {path.absolute()}) nor "
                    f"a packaged vocabulary. Give a packaged name ({names}) or the path of a text file "
                    f"with one class per line.")


def load_vocabulary(path: Path) -> list[str]:
    """The file's lines verbatim, surrounding whitespace stripped, empty lines dropped (no '; ' split)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"The vocabulary file {path} cannot be read as UTF-8 text ({exc}). Save it as a "
                        f"UTF-8 text file with one class per line.") from None
    return [line.strip() for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
