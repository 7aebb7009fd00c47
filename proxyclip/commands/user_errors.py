"""Which exceptions are the user's to fix (printed as one paragraph, exit code 2) and which are bugs (traceback)."""
from __future__ import annotations

from datamodules import DataError

from ..errors import ProxyCLIPError

USER_ERRORS: tuple[type[BaseException], ...] = (ProxyCLIPError, DataError)


def find_user_error(exc: BaseException | None) -> BaseException | None:
    """The user error behind `exc` (frameworks such as jsonargparse re-raise with a cause), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, USER_ERRORS):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
