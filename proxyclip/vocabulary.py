"""The vocabulary format (docs/method.md §4), in one place for the method, the data and the results.

A vocabulary is one line per class; the several names of a class are separated by "; " (exactly that:
commas belong to names, as in ADE847's "bag, traveling bag, ..."). Each name is one text query. Lines are
used verbatim, surrounding whitespace stripped: a respelling would change the text embeddings and the numbers.
The data side only reads the lines (datamodules/vocabulary_files.py) and never splits them.
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
    return queries, query_to_class
