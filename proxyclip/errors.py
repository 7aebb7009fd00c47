"""User-facing errors: one clear paragraph, no traceback (main.py prints them)."""
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


# errors of other packages that are user errors too (the data side's DataError: the method does not import the data)
USER_ERROR_NAMES = frozenset({"DataError"})


def find_user_error(exc: BaseException | None) -> BaseException | None:
    """The user error behind `exc` (frameworks such as jsonargparse re-raise with a cause), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ProxyCLIPError) or type(exc).__name__ in USER_ERROR_NAMES:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
