"""Images: multipart files, raw image bodies, base64 in JSON, V2 BYTES of encoded images.

Decoding, checks and resizing are service/kinds/image/preprocess.py's (training uses the same code).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from service.config import Settings
from service.errors import BadRequest, InvalidInput, LoadError, PayloadTooLarge, UnsupportedMediaType
from service.kinds import register
from service.kinds.base import InputKind, Prepared, check_count, decode_base64, single_input
from service.kinds.image.explain import png_data_url
from service.kinds.image.preprocess import IMAGE_TYPES, ImageSpec, decode_to_array
from service.runtime import Feeds, OnnxModel

if TYPE_CHECKING:
    from service.repository.model_files import ModelMeta


@dataclass
class ImageInput:
    """One encoded image as it came, with the content type it was declared as (if any)."""

    data: bytes
    content_type: str | None = None


@register
class ImageKind(InputKind):
    name = "image"
    media_types = IMAGE_TYPES
    file_suffixes = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
    json_fields: ClassVar[dict[str, bool]] = {"image": False, "images": True}
    binary_fallback = True  # Pillow tells what the bytes are
    accepts = (
        'multipart files, a raw image/* or application/octet-stream body, JSON {"image"|"images": base64}'
    )

    def __init__(self, spec: ImageSpec, input_name: str) -> None:
        self.spec = spec
        self.input_name = input_name

    @classmethod
    def from_body(cls, data: bytes, media_type: str) -> list[Any]:
        if not data:
            raise BadRequest("the request body is empty")
        return [ImageInput(data, media_type)]

    @classmethod
    def from_file(cls, data: bytes, content_type: str | None, filename: str | None) -> list[Any]:
        return [ImageInput(data, content_type)]

    @classmethod
    def from_json(cls, key: str, value: Any) -> list[Any]:
        items = super().from_json(key, value)
        return [ImageInput(decode_base64(item, i, "image")) for i, item in enumerate(items)]

    @classmethod
    def load(cls, meta: ModelMeta, model_dir: Path, model: OnnxModel) -> Self:
        spec = ImageSpec.from_preprocessing(meta.section("image"))
        graph_input = single_input(model, "image")
        expected = (-1, spec.height, spec.width, spec.channels)
        if graph_input.datatype != "UINT8" or graph_input.shape != expected:
            raise LoadError(
                f"image model input must be UINT8 {list(expected)}, graph has {graph_input.datatype} "
                f"{list(graph_input.shape)}"
            )
        return cls(spec, graph_input.name)

    async def prepare(self, items: Sequence[Any], settings: Settings, pool: Executor) -> Prepared:
        """Decode and resize in the thread pool: {input: uint8 (N, H, W, C)}."""
        check_count(len(items), "images", settings)
        spec, limit = self.spec, settings.max_image_pixels

        def decode_all() -> np.ndarray:
            arrays = []
            for i, image in enumerate(items):
                try:
                    arrays.append(
                        decode_to_array(image.data, spec, max_pixels=limit, content_type=image.content_type)
                    )
                except (BadRequest, PayloadTooLarge, UnsupportedMediaType, InvalidInput) as e:
                    if len(items) == 1:
                        raise
                    raise type(e)(f"image {i}: {e.message}") from None  # name the culprit among many
            return np.stack(arrays)

        pixels = await asyncio.get_running_loop().run_in_executor(pool, decode_all)
        return Prepared({self.input_name: pixels}, len(items))

    def explain(self, items: Sequence[Any], feeds: Feeds) -> list[dict[str, Any]] | None:
        """The preprocessed pixels, as the model took them, as PNG data URLs."""
        pixels = feeds[self.input_name]  # (N, H, W, C) uint8
        return [{"input": {"shape": list(row.shape), "image": png_data_url(row)}} for row in pixels]

    def from_v2_bytes(self, name: str, values: list[bytes], binary: bool) -> list[Any] | None:
        """JSON carries images as base64 strings; binary data carries the encoded bytes as they are."""
        if binary:
            return [ImageInput(v) for v in values]
        try:
            return [ImageInput(base64.b64decode(v, validate=True)) for v in values]
        except (binascii.Error, ValueError):
            raise BadRequest(f"input {name!r}: BYTES image data in JSON must be base64") from None
