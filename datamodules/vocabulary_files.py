"""Vocabulary files: the packaged benchmark vocabularies, or a file of the user's (one class per line).

`class_names/<benchmark>.txt` are ProxyCLIP's (the original setup's, verbatim); `class_names/<method>/<benchmark>.txt`
are another method's where its repository's file differs (its synonyms written with our "; "): SCLIP's (which
NACLIP's repository repeats byte for byte) and ClearCLIP's.

A vocabulary that names one class twice is refused here, before any model is built: two classes with the same
names score alike on every pixel, so only the first could ever be predicted. The rule is the method's
(`proxyclip.vocabulary.repeated_classes`, docs/method.md §4), restated because this package may not import
proxyclip; tests/test_datamodules.py checks that the two agree.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from .errors import DataError

PACKAGED_VOCABULARIES = Path(__file__).resolve().parent / "class_names"
SEPARATOR = "; "   # between the names (synonyms) of one class, as the method splits them


def class_key(line: str) -> frozenset[str]:
    """The set of a class line's names as CLIP's tokenizer reads them: spacing collapsed, lower-cased."""
    return frozenset(" ".join(name.split()).lower() for name in str(line).strip().split(SEPARATOR))


def repeated_classes(lines: Sequence[str]) -> list[list[int]]:
    """Groups of positions whose lines name the same class (the same names, in any order); a name shared by two
    different classes (COCO-Object's "bed": a background synonym and a class) is no repeat."""
    groups: dict[frozenset[str], list[int]] = {}
    for index, line in enumerate(lines):
        groups.setdefault(class_key(line), []).append(index)
    return [group for group in groups.values() if len(group) > 1]


def refuse_repeated_classes(lines: Sequence[str], places: Sequence[str], source: str) -> None:
    """A DataError naming every repeated class by its place (`line 7`, `class 2`) when `lines` repeat one."""
    repeats = repeated_classes(lines)
    if repeats:
        listed = "; ".join(" = ".join(f"{places[i]} ({lines[i]!r})" for i in group) for group in repeats)
        raise DataError(f"{source} names the same class more than once: {listed}. Classes with the same names "
                        f"(compared as CLIP reads them: case and spacing ignored, synonyms in any order) score alike "
                        f"on every pixel, so only the first could ever be predicted. Remove the repeats or make their "
                        f"names differ.")


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


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(line number from 1, the line with surrounding whitespace stripped) of each non-empty line of the file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"The vocabulary file {path} cannot be read as UTF-8 text ({exc}). Save it as a "
                        f"UTF-8 text file with one class per line.") from None
    lines = enumerate(re.split(r"\r\n|\r|\n", text), start=1)
    return [(number, line.strip()) for number, line in lines if line.strip()]


def load_vocabulary(path: Path) -> list[str]:
    """The file's lines verbatim, surrounding whitespace stripped, empty lines dropped (no '; ' split); a file that
    names one class twice is refused with the line numbers."""
    numbered = numbered_lines(path)
    lines = [line for _, line in numbered]
    refuse_repeated_classes(lines, [f"line {number}" for number, _ in numbered], f"The vocabulary file {path}")
    return lines
