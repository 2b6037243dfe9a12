"""The input-kind registry: names -> InputKind classes, and recognising which kind a request body holds.

Adding a kind: a folder ``service/kinds/<kind>/`` whose ``kind.py`` holds an ``InputKind`` subclass
decorated ``@register`` (beside it the kind's preprocessing and explain), and its name in ``_BUILTIN``
below (the one line outside the folder). See docs/architecture.md.
"""

from __future__ import annotations

from typing import Any

from service.errors import BadRequest
from service.kinds.base import GENERIC_BINARY, InputKind, K, Prepared, UnknownKind, check_count
from service.registry import Registry

__all__ = [
    "GENERIC_BINARY",
    "InputKind",
    "Prepared",
    "UnknownKind",
    "check_count",
    "form_field_kind",
    "get_kind",
    "kind_for_body",
    "kind_for_file",
    "kind_for_json",
    "kind_names",
    "register",
]

# The built-in kinds, in the order a generic binary body is offered to their ``sniff``.
_BUILTIN = ("image", "text", "tabular", "audio", "tensor")
_KINDS: Registry[type[InputKind]] = Registry(
    "input kind", [f"service.kinds.{name}.kind" for name in _BUILTIN], UnknownKind, plural="kinds"
)


def register(cls: K) -> K:
    """Class decorator: make the kind known under ``cls.name``."""
    _KINDS.add(cls.name, cls)
    return cls


def kind_names() -> list[str]:
    return _KINDS.names()


def get_kind(name: str) -> type[InputKind]:
    """The kind registered as ``name``; UnknownKind names the ones that exist."""
    return _KINDS.get(name)


def _kinds() -> list[type[InputKind]]:
    return _KINDS.values()


def _sniffed(data: bytes) -> type[InputKind] | None:
    for kind in _kinds():
        if kind.sniff(data):
            return kind
    return next((k for k in _kinds() if k.binary_fallback), None)


def kind_for_body(media_type: str, data: bytes) -> type[InputKind] | None:
    """The kind whose raw bodies have this content type (generic binary: sniffed), or None."""
    for kind in _kinds():
        if media_type in kind.media_types:
            return kind
    return _sniffed(data) if media_type in GENERIC_BINARY else None


def kind_for_file(data: bytes, content_type: str | None, filename: str | None) -> type[InputKind] | None:
    """The kind of one multipart file: its declared type, else its name's suffix, else its bytes."""
    declared = (content_type or "").split(";")[0].strip().lower()
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if filename and "." in filename else ""
    by_suffix = next((k for k in _kinds() if suffix and suffix in k.file_suffixes), None)
    if by_suffix is not None and declared in _VAGUE_FILE_TYPES:
        return by_suffix  # rows.csv sent as text/plain (as some clients label any text file) is a CSV
    for kind in _kinds():
        if declared in kind.media_types:
            return kind
    if by_suffix is not None:
        return by_suffix
    return _sniffed(data) if declared in GENERIC_BINARY | {""} else None


def form_field_kind() -> type[InputKind]:
    """The kind whose items plain multipart fields are (text)."""
    found = next((k for k in _kinds() if k.form_fields), None)
    if found is None:
        raise BadRequest("plain form fields are not inputs of any kind: send files")
    return found


# Declared file types that say little: the file's suffix, when a kind claims it, decides first.
_VAGUE_FILE_TYPES = GENERIC_BINARY | {"", "text/plain"}


def json_keys() -> list[str]:
    return [key for kind in _kinds() for key in kind.json_fields]


def kind_for_json(doc: Any) -> tuple[type[InputKind], list[Any]]:
    """The kind and items of a JSON body: an object with exactly one kind's field."""
    keys = json_keys()
    found = [k for k in keys if k in doc] if isinstance(doc, dict) else []
    if len(found) != 1:
        raise BadRequest(
            "JSON body must be an object with exactly one of " + ", ".join(f'"{k}"' for k in keys)
        )
    key = found[0]
    kind = next(k for k in _kinds() if key in k.json_fields)
    return kind, kind.from_json(key, doc[key])


def accepted() -> str:
    """The request bodies /predict takes, for 415 messages."""
    return "; ".join(f"{k.plural()}: {k.accepts}" for k in _kinds() if k.accepts)
