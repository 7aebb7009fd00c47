"""The data's one error type: a user error in the data or its configuration.

Every message is one paragraph that names the file, folder or value at fault and says the fix.
It subclasses `ValueError` so that callers that do not know this package still catch it, and it
takes a single message argument so that it survives being re-raised from a DataLoader worker.
"""
from __future__ import annotations

from collections.abc import Sequence


class DataError(ValueError):
    """Bad data or data configuration (missing folder, absent file, wrong label values, ...)."""


def examples(items: Sequence[object], limit: int = 5) -> str:
    """`"a, b, c"` for the first `limit` items, with `"and N more"` when there are more."""
    shown = ", ".join(str(item) for item in items[:limit])
    rest = len(items) - limit
    return shown + (f" and {rest} more" if rest > 0 else "")
