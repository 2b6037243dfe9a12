"""V2 datatypes and the binary framing of BYTES elements: numpy only, shared by the server and the client."""

from __future__ import annotations

import struct
from collections.abc import Iterable

import numpy as np

V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
NUMPY_TO_V2 = {v: k for k, v in V2_TO_NUMPY.items()}


def pack_bytes(items: Iterable[bytes]) -> bytes:
    """BYTES elements in binary: each a 4-byte little-endian length, then the bytes."""
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def unpack_bytes(raw: bytes) -> list[bytes]:
    """The inverse of ``pack_bytes``; ValueError when the framing is broken."""
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise ValueError("truncated BYTES element length")
        (n,) = struct.unpack_from("<I", raw, pos)
        if pos + 4 + n > len(raw):
            raise ValueError("BYTES element runs past its data")
        items.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return items
