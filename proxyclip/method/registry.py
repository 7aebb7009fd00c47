"""One registry pattern for every pluggable kind (timm / open_clip style: one registry per kind).

VFMs (`vfm/registry.py`) and last blocks (`last_block/base.py`) each keep a `Registry`; an entry joins it by
registering itself where it is defined, so a new VFM family or a new method's last block is one module that
registers itself, imported once by its package's `__init__`.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from ..errors import ProxyCLIPError, close_matches

T = TypeVar("T")
_NOT_GIVEN: Any = object()


class Registry(Mapping[str, T]):
    """A read-only mapping name -> entry, in registration order, that entries join with `register`.

    kind: what an entry is, for messages ("VFM", "method"); setting: the configuration key that names one
    ("vfm", "method"), which the unknown-name message tells the user to set.
    """

    def __init__(self, kind: str, setting: str):
        self.kind, self.setting = kind, setting
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T = _NOT_GIVEN) -> Any:
        """`register(name, entry)`, or `@registry.register(name)` above the class or function that is the entry."""
        if entry is _NOT_GIVEN:
            def decorator(obj: T) -> T:
                self.register(name, obj)
                return obj
            return decorator
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def reorder(self, key) -> None:
        """Order the entries by `key(name, entry)` (stable: equal keys keep their registration order)."""
        self._entries = dict(sorted(self._entries.items(), key=lambda item: key(*item)))

    def lookup(self, name: str) -> T:
        """The entry `name`; an unknown name raises a ProxyCLIPError with the close matches and every known name."""
        if name not in self._entries:
            raise ProxyCLIPError(f"Unknown {self.kind} '{name}'. {close_matches(name, self._entries)} "
                                 f"Set `{self.setting}:` to one of: {', '.join(sorted(self._entries))}.")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self._entries)})"
