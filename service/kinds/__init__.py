"""The input-kind registry: names -> InputKind classes, and recognising which kind a request body holds
(``recognise``, ``recognise_form``: the data plane's decode step for /predict).

Adding a kind: a folder ``service/kinds/<kind>/`` whose ``kind.py`` holds an ``InputKind`` subclass
decorated ``@register`` (beside it the kind's preprocessing and explain), and its name in ``_BUILTIN``
below (the one line outside the folder). See docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from service.errors import BadRequest, UnsupportedMediaType
from service.kinds.base import GENERIC_BINARY, InputKind, K, Prepared, UnknownKind, check_count
from service.protocol.documents import parse_json
from service.registry import Registry

__all__ = [
    "GENERIC_BINARY",
    "FormFile",
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
    "recognise",
    "recognise_form",
    "register",
]

# The built-in kinds, in the order a generic binary body is offered to their ``sniff``.
_BUILTIN = ("image", "text", "subword", "tabular", "audio", "tensor")
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


def recognise(media_type: str, body: bytes) -> tuple[type[InputKind], list[Any]]:
    """The kind and items of a non-multipart /predict body: a JSON document names its kind by its field,
    a raw body by its content type (a generic binary one by its bytes); 415 when no kind takes it."""
    if media_type == "application/json":
        return kind_for_json(parse_json(body))
    kind = kind_for_body(media_type, body)
    if kind is not None:
        return kind, kind.from_body(body, media_type)
    if not media_type:
        raise UnsupportedMediaType(f"missing Content-Type; send one of: {accepted()}")
    hint = (
        " (curl -d sends form encoding: use -F file=@image.png or set -H 'Content-Type')"
        if media_type == "application/x-www-form-urlencoded"
        else ""
    )
    raise UnsupportedMediaType(f"unsupported Content-Type {media_type!r}{hint}; send one of: {accepted()}")


@dataclass(frozen=True, slots=True)
class FormFile:
    """One file of a multipart body."""

    data: bytes
    content_type: str | None
    filename: str | None


def recognise_form(parts: Iterable[FormFile | str]) -> tuple[type[InputKind], list[Any]]:
    """The kind and items of a multipart body's files (told apart by type, name or bytes) and plain
    fields (the form-field kind's items: text); one kind per request."""
    found: dict[type[InputKind], list[Any]] = {}
    for part in parts:
        if isinstance(part, FormFile):
            kind = kind_for_file(part.data, part.content_type, part.filename)
            if kind is None:
                raise UnsupportedMediaType(
                    f"unsupported file type {part.content_type!r} ({part.filename}); send one of: {accepted()}"
                )
            found.setdefault(kind, []).extend(kind.from_file(part.data, part.content_type, part.filename))
        else:
            kind = form_field_kind()
            found.setdefault(kind, []).extend(kind.from_field(part))
    if len(found) > 1:
        sent = " and ".join(k.plural() for k in found)
        raise BadRequest(f"send inputs of one kind per request, not {sent}")
    if not found:
        raise BadRequest("the multipart body holds no files or fields")
    return next(iter(found.items()))


def accepted() -> str:
    """The request bodies /predict takes, for 415 messages."""
    return "; ".join(f"{k.plural()}: {k.accepts}" for k in _kinds() if k.accepts)
