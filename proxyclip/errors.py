"""The method's user-facing error: one clear paragraph that names the value at fault and the fix."""
from __future__ import annotations

import difflib
from typing import Iterable


class ProxyCLIPError(Exception):
    """A user error: bad input, configuration, data or weights. The message says the fix."""


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> str:
    """`"Did you mean: a, b?"` for the closest of `choices`, or a short listing when none is close."""
    choices = sorted(set(choices))
    matches = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not matches:
        matches = [c for c in choices if name.lower().split(".")[0][:6] in c.lower()][:n]
    if matches:
        return "Did you mean: " + ", ".join(matches) + "?"
    return f"{len(choices)} names are known, e.g. " + ", ".join(choices[:n]) + "."
