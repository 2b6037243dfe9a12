"""The OpenAPI document as the server really answers: every error status an operation can give, each with
the one error schema (``{"error": "..."}``), and /metrics as Prometheus text.

FastAPI only knows the 200 and its own 422 (with a schema the service never sends), because the handlers
take the raw request and raise ServiceErrors. So the generated document is completed here, from one table,
and checked by schemathesis against the running server (tests/integration/test_openapi_conformance.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.protocol.tensors import V2_TO_NUMPY
from service.repository.storage import MODEL_NAME

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what went wrong, for people"}},
}
DESCRIPTIONS = {
    400: "Malformed request: unparseable body, invalid model name, bad parameters",
    401: "Missing or invalid API key (when MODELSERVE_API_KEYS is set)",
    403: "A key without the right to this route (the repository routes need the admin key)",
    404: "Unknown model or version",
    408: "The request body did not arrive in time",
    413: "Body, image or item count past a configured limit",
    415: "Unsupported or missing Content-Type",
    422: "Well-formed but wrong for the model: shape, datatype, missing input, empty text, query value",
    500: "The model failed on this batch, or an internal error (the log has the detail under the request id)",
    503: "Overloaded (queue, decoding pool or connections full) or not ready or shutting down; see Retry-After",
    504: "The request reached its timeout before it ran",
}
_PREDICT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "description": 'exactly one of "image", "images" (base64), "text", "texts"',
                "properties": {
                    "image": {"type": "string", "format": "byte"},
                    "images": {"type": "array", "items": {"type": "string", "format": "byte"}},
                    "text": {"type": "string"},
                    "texts": {"type": "array", "items": {"type": "string"}},
                },
                "minProperties": 1,
                "maxProperties": 1,
            }
        },
        "text/plain": {"schema": {"type": "string"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
_V2_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": list(V2_TO_NUMPY)},
        "parameters": {"type": "object"},
        "data": {"type": "array"},
    },
}
_INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "Open Inference Protocol inference request (binary tensors: "
                "application/octet-stream with Inference-Header-Content-Length)",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object"},
                    "inputs": {"type": "array", "items": _V2_TENSOR},
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                        },
                    },
                },
            }
        }
    },
}
# What the server accepts, so generated clients (and schemathesis) send names the server can look up.
_PARAMETER_PATTERNS = {"name": MODEL_NAME.pattern, "model": MODEL_NAME.pattern, "version": "[0-9]{1,18}"}
_ANY = (401, 503)  # every route: keys, overload, shutdown
_BODY = (400, 408, 413)  # every route that reads a body
_INFERENCE = (*_BODY, 404, 415, 422, 500, 504)


def _codes(method: str, path: str) -> tuple[int, ...]:
    if path.startswith("/v2/repository/"):
        return (*_ANY, *_BODY, 403, 404)
    if method == "post":
        return (*_ANY, *_INFERENCE)
    if "{name}" in path:
        return (*_ANY, 400, 404, 422)
    return _ANY


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error responses and the error schema; /metrics answers text."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body: never sent
        schema["components"]["schemas"].pop(name, None)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", ()):
                pattern = _PARAMETER_PATTERNS.get(parameter["name"])
                if pattern is not None:
                    _constrain(parameter, f"^{pattern}$")
            if method == "post" and path.endswith("/predict"):
                operation["requestBody"] = _PREDICT_BODY
            elif method == "post" and path.endswith("/infer"):
                operation["requestBody"] = _INFER_BODY
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for code in _codes(method, path):
                responses[str(code)] = {"description": DESCRIPTIONS[code], "content": error}
            responses["503"]["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    metrics = schema.get("paths", {}).get("/metrics", {}).get("get")
    if metrics is not None:
        metrics["responses"]["200"] = {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    return schema


def _constrain(parameter: dict[str, Any], pattern: str) -> None:
    schema = parameter.get("schema", {})
    for option in schema.get("anyOf", [schema]):  # an optional parameter: string or null
        if option.get("type") == "string":
            option["pattern"] = pattern


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
