"""The InputKind interface: everything the service knows about one kind of input, in one class.

A kind (image, text, tabular, audio, tensor) is a subclass of ``InputKind`` in its folder's ``kind.py`` under
``service/kinds/``, registered with ``@register``. Nothing outside that module switches on the kind's name.

A kind has two halves:

* **Class level, before the model is known** (the request may not name one): which request bodies are
  this kind's inputs, and how they turn into a list of raw *items* (one per row the model will see).
  ``media_types`` (raw bodies and multipart files of these types), ``file_suffixes`` (multipart files
  so named when their type says nothing), ``json_fields`` (``{"image": False, "images": True}``: JSON
  keys, True when the value is a list of items), ``form_fields`` (plain multipart fields are its items),
  ``binary_fallback`` (a generic binary body nobody ``sniff``\\s is this kind's), and the decoders
  ``sniff``, ``from_body``, ``from_json``, ``from_file``, ``from_field``. They raise ``BadRequest``
  (400) for a malformed envelope; per-item checks belong to ``prepare``.

* **Instance level, bound to one model version**: ``load(meta, model_dir, model)`` builds it from the
  version's model.json section and refuses (LoadError) a section or graph that do not fit;
  ``pad_values`` says how inputs of different lengths join a batch, ``prepare`` validates and
  preprocesses a request's items into the model's feeds (CPU-heavy work in ``pool``; every 4xx here,
  before anything is queued), ``explain`` shows what the model saw (``/predict?explain=1``),
  ``check_feeds`` checks V2 tensors' values, ``from_v2_bytes`` takes a V2 BYTES input's elements as items (None: this
  kind takes no BYTES), and ``describe`` adds what clients need to build inputs to ``/models`` and the
  V2 model metadata.

The preprocessing itself lives in ``service/kinds/<kind>/preprocess.py``, which training imports too, so a model
sees at serving exactly what it saw in training; a kind module wraps it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

import numpy as np

from service.config import Settings
from service.errors import BadRequest, LoadError, PayloadTooLarge, UnsupportedMediaType
from service.runtime import Feeds, OnnxModel, TensorSpec

if TYPE_CHECKING:
    from service.repository.model_files import ModelMeta

# Content types that say "some bytes" without naming a format: sniffing, then a fallback kind, decide.
GENERIC_BINARY = frozenset({"application/octet-stream", "binary/octet-stream"})


@dataclass
class Prepared:
    """A request's inputs, ready for the batcher: feeds of ``rows`` rows, and per-row notes for the
    answer (e.g. tabular values outside the training range), merged into each prediction."""

    feeds: Feeds
    rows: int
    notes: list[dict[str, Any]] | None = None


class UnknownKind(LoadError):
    """model.json or a checkpoint names a kind nobody registered."""


class InputKind:
    """One input kind; see the module docstring for the contract."""

    name: ClassVar[str]
    noun: ClassVar[str] = ""  # what one item is called in messages ("image"); defaults to name
    media_types: ClassVar[frozenset[str]] = frozenset()
    file_suffixes: ClassVar[frozenset[str]] = frozenset()
    json_fields: ClassVar[dict[str, bool]] = {}
    form_fields: ClassVar[bool] = False
    binary_fallback: ClassVar[bool] = False
    accepts: ClassVar[str] = ""  # one line for the 415 message: the bodies this kind takes

    # ------------------------------------------------------------------ recognising a request (class level)
    @classmethod
    def plural(cls) -> str:
        return (cls.noun or cls.name) + "s"

    @classmethod
    def sniff(cls, data: bytes) -> bool:
        """True when a generic binary body (or file) is recognisably this kind's (magic bytes)."""
        return False

    @classmethod
    def from_body(cls, data: bytes, media_type: str) -> list[Any]:
        """Items from a raw body of one of ``media_types`` (or a sniffed generic one)."""
        raise UnsupportedMediaType(f"{cls.name} inputs cannot be sent as a raw {media_type} body")

    @classmethod
    def from_file(cls, data: bytes, content_type: str | None, filename: str | None) -> list[Any]:
        """Items from one multipart file; by default the file is one raw body."""
        return cls.from_body(data, content_type or "")

    @classmethod
    def from_json(cls, key: str, value: Any) -> list[Any]:
        """Items from the JSON body's ``key`` (one of ``json_fields``)."""
        return list_field(key, value, cls.json_fields[key])

    @classmethod
    def from_field(cls, value: str) -> list[Any]:
        """Items from one plain multipart field (kinds with ``form_fields``)."""
        return [value]

    # ------------------------------------------------------------------ bound to one model version
    @classmethod
    def load(cls, meta: ModelMeta, model_dir: Path, model: OnnxModel) -> Self:
        """The kind as this version's model.json describes it; LoadError (its message is answered to
        clients: no paths, no library text) when the section is missing or
        the graph does not take what this kind feeds it."""
        return cls()

    def pad_values(self) -> dict[str, int]:
        """Inputs whose second axis varies, and the value that pads them when requests join a batch."""
        return {}

    async def prepare(self, items: Sequence[Any], settings: Settings, pool: Executor) -> Prepared:
        """Validate and preprocess a request's items (4xx here, never later) into the model's feeds."""
        raise UnsupportedMediaType(f"{self.name} models take tensors: POST /v2/models/<name>/infer")

    def check_feeds(self, feeds: Feeds) -> None:
        """V2 tensors that passed the graph's dtype and shape checks: the kind's own value checks (e.g.
        finite features, valid category indices), InvalidInput (422) when they fail."""

    def from_v2_bytes(self, name: str, values: list[bytes], binary: bool) -> list[Any] | None:
        """Items from a V2 BYTES input's elements (``binary``: raw, else JSON strings as UTF-8); None
        when this kind takes no BYTES input (the tensor path then checks it against the graph)."""
        return None

    def explain(self, items: Sequence[Any], feeds: Feeds) -> list[dict[str, Any]] | None:
        """``/predict?explain=1``: what the model saw, one dict per row, from the request's items and the
        feeds they became; None when this kind has nothing to show."""
        return None

    def from_v2_tensor(self, name: str, datatype: str, value: np.ndarray) -> list[Any] | None:
        """Items from a lone numeric V2 input the graph does not have (an audio model's ``waveform``);
        None when this kind takes none (the tensor path then names the graph's inputs)."""
        return None

    def refusal(self, model_name: str, sent: type[InputKind]) -> str:
        """The 415 message when a request sends another kind's inputs to this kind's model."""
        return f"model {model_name!r} takes {self.plural()}; this request sent {sent.plural()}"

    def describe(self) -> dict[str, Any]:
        """Extra fields for /models and V2 model metadata (e.g. a tabular model's features)."""
        return {}


K = TypeVar("K", bound=type[InputKind])


def list_field(key: str, value: Any, many: bool) -> list[Any]:
    """A JSON field's items: the value itself (one item), or a list of them."""
    if not many:
        return [value]
    if not isinstance(value, list):
        raise BadRequest(f'"{key}" must be a list')
    return value


def check_count(n: int, what: str, settings: Settings) -> None:
    """The per-request item limit every kind shares (``max_items_per_request``)."""
    if n == 0:
        raise BadRequest(f"the request holds no {what}")
    if n > settings.max_items_per_request:
        raise PayloadTooLarge(f"the request holds {n} {what}; the limit is {settings.max_items_per_request}")


def decode_base64(item: Any, i: int, what: str) -> bytes:
    """Item ``i`` of a JSON request for a binary kind ("image", "audio"): a base64 string, or a data URL."""
    if not isinstance(item, str):
        raise BadRequest(f"{what} {i} must be a base64 string")
    try:
        return base64.b64decode(item.split(",", 1)[-1] if item.startswith("data:") else item, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what} {i} is not valid base64") from None


def single_input(model: OnnxModel, kind: str) -> TensorSpec:
    """Kinds that feed one tensor need a graph with exactly one input: that input."""
    if len(model.inputs) != 1:
        raise LoadError(f"a {kind} model needs exactly one input, the graph has {len(model.inputs)}")
    return model.inputs[0]
