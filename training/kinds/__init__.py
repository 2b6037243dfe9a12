"""The training-side kind registry: `modelserve train <kind>` and export look kinds up here.

Adding a kind: ``training/kinds/<kind>/`` (kind.py: a ``TrainingKind`` subclass decorated ``@register``;
beside it the recipe, data sources and augmentation), and
its module in ``_BUILTIN`` below. The service side (``service/kinds/``) registers the same name.
"""

from __future__ import annotations

from service.kinds import UnknownKind
from service.registry import Registry
from training.kinds.base import TOLERANCE, ExportError, GraphInput, T, TrainingKind

__all__ = ["TOLERANCE", "ExportError", "GraphInput", "TrainingKind", "get", "names", "register"]

_BUILTIN = ("image", "text", "tabular", "audio")
_KINDS: Registry[TrainingKind] = Registry(
    "input kind", [f"training.kinds.{name}.kind" for name in _BUILTIN], UnknownKind, plural="trainable kinds"
)


def register(cls: T) -> T:
    """Class decorator: make the kind trainable and exportable under ``cls.name``."""
    _KINDS.add(cls.name, cls())
    return cls


def names() -> list[str]:
    return _KINDS.names()


def get(name: str) -> TrainingKind:
    """The trainable kind ``name``; UnknownKind names the ones that exist."""
    return _KINDS.get(name)
