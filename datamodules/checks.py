"""Every sample read and checked, all problems collected: `prepare check` and the DataModules' `check` option
(the benchmarks' image and label pairs, predict's images); and the one value both kinds of DataModule check alike,
`numerics`."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from .errors import DataError
from .io import read_image, read_label
from .labels import LabelMap, label_problem, outside_classes

#: how the model computes, linked to the segmentor's `numerics` (docs/method.md §1-§3)
Numerics = Literal["original", "defined"]


def checked_numerics(value: str) -> str:
    """`value` when it is one of Numerics, else one DataError (a DataModule built in Python has no parser to say it)."""
    if value not in ("original", "defined"):
        raise DataError("numerics must be 'original' (every input as the method's original harness computes it, the "
                        "benchmarks' protocol) or 'defined' (the weights' own statistics on x / 255, no NaN from an "
                        f"emptied proxy-attention row; predict's default); got {value!r}.")
    return value


def check_samples(pairs: Sequence[tuple[Path, Path]], num_classes: int, ignore_index: int, check_range: bool,
                  label_map: LabelMap | None, desc: str = "check") -> tuple[list[str], Counter]:
    """(one message per bad sample, the unexpected label values as stored with their pixel counts).

    A sample is bad when its image or label cannot be read (missing, empty, truncated, corrupt), when the label's
    size differs from the image's, or (`check_range`) when the label has values outside 0..num_classes-1 other than
    `ignore_index`. Every sample is decoded: a truncated JPEG shows only there.
    """
    bad: list[str] = []
    values: Counter = Counter()
    for image_path, label_path in tqdm(pairs, desc=desc, unit="image"):
        try:
            image = read_image(image_path)
            stored = read_label(label_path)
        except DataError as exc:
            bad.append(str(exc))
            continue
        label = stored if label_map is None else label_map(stored)
        problem = label_problem(label, image.shape[:2], image_path, label_path, num_classes, ignore_index, check_range, stored)
        if problem:
            bad.append(problem)
            if tuple(label.shape) == tuple(image.shape[:2]):
                v, n = np.unique(stored[outside_classes(label, num_classes, ignore_index)], return_counts=True)
                values.update(dict(zip(v.tolist(), n.tolist())))
    return bad, values


def check_images(paths: Sequence[str]) -> None:
    """Decode every image; one DataError lists every one that cannot be read (the first 10 and how many more)."""
    bad = []
    for path in tqdm(paths, desc="check inputs", unit="image"):
        try:
            read_image(path)
        except DataError as exc:
            bad.append(str(exc))
    if bad:
        raise DataError(f"{len(bad)} of the {len(paths)} input images cannot be read:" + listing(bad) + "\nReplace or "
                        "remove them, or run without --data.init_args.check: the others are then segmented and the bad "
                        "ones listed at the end (and in skipped.json).")


def listing(messages: Sequence[str], limit: int = 10) -> str:
    """Messages as an indented list, the first `limit` of them and a count of the rest."""
    shown = "\n  - " + "\n  - ".join(messages[:limit])
    return shown + (f"\n  - ... and {len(messages) - limit} more" if len(messages) > limit else "")
