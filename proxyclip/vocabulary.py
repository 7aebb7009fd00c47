"""The vocabulary format (docs/method.md §4), in one place for the method, the data and the results.

A vocabulary is one line per class; the several names of a class are separated by "; " (exactly that:
commas belong to names, as in ADE847's "bag, traveling bag, ..."). Each name is one text query. Lines are
used verbatim, surrounding whitespace stripped: a respelling would change the text embeddings and the numbers.
Two classes with the same names would tie on every pixel, so a vocabulary that repeats a class is refused.
The data side reads the lines (datamodules/vocabulary_files.py) and refuses repeated classes by the same rule
(it may not import this package; tests/test_datamodules.py checks that the two agree).
"""
from __future__ import annotations

from typing import Sequence

from .errors import ProxyCLIPError

SEPARATOR = "; "


def class_queries(line: str) -> list[str]:
    """The names (queries) of one class line."""
    return str(line).strip().split(SEPARATOR)


def display_names(class_names: Sequence[str], background_name: str | None = None) -> list[str]:
    """One short name per class for tables and pictures: a line's first name, or `background_name` for class 0."""
    names = [class_queries(line)[0] for line in class_names]
    if background_name and names:
        names[0] = background_name
    return names


def query_key(name: str) -> str:
    """A query as CLIP's tokenizer reads it: spacing collapsed and lower-cased (open_clip's `whitespace_clean`,
    then `str.lower`), so "Chest of  drawers" and "chest of drawers" are one text."""
    return " ".join(str(name).split()).lower()


def class_key(line: str) -> frozenset[str]:
    """What a class line asks CLIP for: the set of its queries' keys. Lines with equal keys score alike everywhere."""
    return frozenset(query_key(name) for name in class_queries(line))


def repeated_classes(class_names: Sequence[str]) -> list[list[int]]:
    """Groups of class indices whose lines name the same class (equal `class_key`s), in order of first appearance.
    A query shared by two different classes (COCO-Object's "bed", a background synonym and a class) is no repeat."""
    groups: dict[frozenset[str], list[int]] = {}
    for index, line in enumerate(class_names):
        groups.setdefault(class_key(line), []).append(index)
    return [group for group in groups.values() if len(group) > 1]


def parse_vocabulary(class_names: Sequence[str]) -> tuple[list[str], list[int]]:
    """Class lines -> (queries, the class index of each query)."""
    if isinstance(class_names, str):
        raise ProxyCLIPError(f"The vocabulary must be a list of class lines, got the string {class_names!r}.")
    if not class_names:
        raise ProxyCLIPError("The vocabulary is empty: give at least one class name (one class per line, synonyms separated by '; ').")
    queries: list[str] = []
    query_to_class: list[int] = []
    for index, line in enumerate(class_names):
        names = class_queries(line)
        if not str(line).strip() or any(not name.strip() for name in names):
            raise ProxyCLIPError(
                f"Class {index} of the vocabulary has an empty name ({line!r}). Every class needs at least one name; "
                "separate synonyms with '; ' and do not leave empty lines or trailing separators."
            )
        queries += names
        query_to_class += [index] * len(names)
    repeats = repeated_classes(class_names)
    if repeats:
        listed = "; ".join(" = ".join(f"class {i} ({str(class_names[i]).strip()!r})" for i in group) for group in repeats)
        raise ProxyCLIPError(
            f"The vocabulary names the same class more than once: {listed} (positions in the list, from 0). Classes "
            "with the same names (compared as CLIP reads them: case and spacing ignored, synonyms in any order) score "
            "alike on every pixel, so only the first could ever be predicted. Remove the repeats or make their names differ."
        )
    return queries, query_to_class
