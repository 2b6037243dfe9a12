"""The training-side kind registry: `modelserve train <kind>` and export look kinds up here.

Adding a kind: ``training/kinds/<kind>.py`` with a ``TrainingKind`` subclass decorated ``@register``, and
its module in ``_BUILTIN`` below. The service side (``service/kinds/``) registers the same name.
"""

from __future__ import annotations

import importlib

from service.kinds import UnknownKind
from training.kinds.base import TOLERANCE, ExportError, GraphInput, T, TrainingKind

__all__ = ["TOLERANCE", "ExportError", "GraphInput", "TrainingKind", "get", "names", "register"]

_KINDS: dict[str, TrainingKind] = {}
_BUILTIN = ("image", "text", "subword", "tabular", "audio")
_loaded = False


def register(cls: T) -> T:
    """Class decorator: make the kind trainable and exportable under ``cls.name``."""
    _KINDS[cls.name] = cls()
    return cls


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN:
            importlib.import_module(f"training.kinds.{module}")


def names() -> list[str]:
    _ensure_loaded()
    return sorted(_KINDS)


def get(name: str) -> TrainingKind:
    """The trainable kind ``name``; UnknownKind names the ones that exist."""
    _ensure_loaded()
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownKind(
            f"unknown input kind {name!r}; the trainable kinds are: {', '.join(sorted(_KINDS))}"
        ) from None
