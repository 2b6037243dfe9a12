"""A registry of named things that register themselves (input kinds, training kinds), shared by the
service and training, so neither writes its own lookup.

The built-in entries' modules are imported on the first lookup, not at import time: each module registers
what it defines (a class decorator calling ``add``), and adding one is one module plus its name in the
registry's ``builtin`` list.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(
        self, what: str, builtin: Sequence[str], missing: Callable[[str], Exception], plural: str = ""
    ) -> None:
        """``what`` names an entry in messages (``plural`` all of them); ``builtin`` lists the modules that
        register the built-in entries, in lookup order; ``missing`` makes the error for an unknown name."""
        self.what = what
        self.plural = plural or f"{what}s"
        self.builtin = tuple(builtin)
        self.missing = missing
        self._entries: dict[str, T] = {}
        self._loaded = False

    def add(self, name: str, entry: T) -> None:
        old = self._entries.get(name)
        if old is not None and old is not entry and type(old) is not type(entry):
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self.builtin:
                importlib.import_module(module)

    def get(self, name: str) -> T:
        """The entry registered as ``name``; the ``missing`` error names the ones that exist."""
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise self.missing(f"unknown {self.what} {name!r}; the {self.plural} are: {known}") from None

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def values(self) -> list[T]:
        """Every entry, in registration order (the built-in modules' order first)."""
        self._load()
        return list(self._entries.values())
