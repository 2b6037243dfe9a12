"""JSON request documents: parsed, or a 400 that says where they broke."""

from __future__ import annotations

from typing import Any

import orjson

from service.errors import BadRequest


def parse_json(body: bytes) -> Any:
    if not body:
        raise BadRequest("the request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the body is not valid JSON (line {e.lineno}, column {e.colno})") from None
