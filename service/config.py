"""Settings: every knob of the server, from MODELSERVE_* environment variables (flags override them)."""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MODELSERVE_", extra="ignore")

    models_dir: str = "models"
    """The model repository: <name>/<version>/model.onnx (+ model.json), <name>/config.json; a folder, or
    s3://bucket/prefix (same layout; AWS_* credentials, AWS_ENDPOINT_URL; fetched into models_cache_dir)."""
    models_cache_dir: Path | None = None
    """Where versions from an s3:// repository are fetched to and loaded from; unset: <tmp>/modelserve-cache."""
    host: str = "0.0.0.0"
    """Interface to listen on."""
    port: int = 8080
    """TCP port to listen on."""
    grpc_port: int = Field(8081, ge=0, le=65535)
    """TCP port of the Open Inference Protocol over gRPC (same process and batchers as HTTP); 0 turns it off."""
    grpc_engine: Literal["native", "grpcio"] = "native"
    """What serves gRPC: "native", HTTP/2 on the event loop (service/transports/grpc/http2.py, a third of the
    CPU per call), or "grpcio", grpc.aio (the library's own server, the fallback)."""
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    """Worker processes: "auto" is one per usable CPU (cgroup quota and CPU affinity aware); 1 serves from
    one process (for Kubernetes pods that scale by replicas). Each worker loads every model."""
    default_model: str | None = None
    """Model /predict uses when none is named (else the only model, or the only one of that input kind)."""
    repository_poll_s: float = Field(0.0, ge=0)
    """Poll the repository every this many seconds and load/reload/unload what changed; 0 turns it off."""
    strict_readiness: bool = True
    """Ready only if every model loaded; when false, ready once loading ends with at least one model."""

    # Batching defaults; a model's config.json overrides them.
    max_batch_size: int = Field(64, ge=1)
    """Most rows (images, texts, tensor rows) one run takes."""
    max_queue_delay_ms: float = Field(0.0, ge=0)
    """Extra wait for a fuller batch, timed from the first queued request; 0 runs what is queued at once."""
    max_queue_size: int = Field(512, ge=1)
    """Requests waiting per model version before new ones get 503 with Retry-After."""
    timeout_s: float = Field(30.0, gt=0)
    """A request still queued after this long answers 504 and never runs."""
    instances: int = Field(1, ge=1)
    """Batches that may run at once per model version."""
    inline_run_ms: float = Field(2.0, ge=0)
    """Run a batch on the event loop itself when runs of its size took at most this long (no hand-off to
    the inference thread, which costs more than a small model's run); 0: always in the inference thread."""

    # onnxruntime
    providers: list[str] = ["auto"]
    """Execution providers in order; "auto" takes CUDA when onnxruntime-gpu has it, else CPU."""
    intra_op_threads: int = Field(0, ge=0)
    """Threads inside one operator; 0: the usable CPUs divided among the workers (at least 1)."""
    inter_op_threads: int = Field(1, ge=0)
    """Threads across independent operators; 0 lets onnxruntime choose."""
    spin_wait: bool = False
    """Let idle onnxruntime pool threads spin for work (lower latency for big models, but they take CPU
    from the event loop; off by default)."""
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    """onnxruntime graph optimisations."""
    preprocess_threads: int = Field(2, ge=1)
    """Threads that decode and resize images, off the event loop."""

    # Limits: each refused with a clear 4xx.
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1)
    """Largest request body (413); checked on Content-Length before the body is read."""
    max_image_pixels: int = Field(40_000_000, ge=1)
    """Largest image, width x height, checked on the header before decoding (413)."""
    max_items_per_request: int = Field(256, ge=1)
    """Most images, texts or tensor rows in one request (413)."""
    max_text_chars: int = Field(20_000, ge=1)
    """Most characters in one text (422)."""

    # Connections (service/transports/http/limits.py): slow, silent and oversized clients.
    header_timeout_s: float = Field(10.0, gt=0)
    """The request line and headers must arrive within this long (408; a silent connection is closed); on
    the gRPC port, the HTTP/2 preface."""
    body_timeout_s: float = Field(60.0, gt=0)
    """The whole request body must arrive within this long after the headers (408)."""
    max_header_bytes: int = Field(64 * 1024, ge=1024)
    """Largest request line plus headers (431)."""
    max_headers: int = Field(100, ge=1)
    """Most request header lines (431)."""
    max_connections: int = Field(1000, ge=1)
    """Open connections past which a request answers 503 with Retry-After and the connection closes; on the
    gRPC port (a separate count), a new connection gets GOAWAY (ENHANCE_YOUR_CALM) and is closed."""
    max_preprocess_queue: int = Field(64, ge=1)
    """Requests decoding or waiting to decode (images, long texts) before new ones get 503 + Retry-After."""

    # Operations
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Logging level."""
    log_format: Literal["json", "text"] = "text"
    """json: one JSON object per line (for log shippers); text: for people."""
    access_log: bool = True
    """One log line per request: request id, model, version, status, latency, rows, batch size."""
    metrics: bool = True
    """Serve Prometheus metrics at /metrics and record them."""
    drain_timeout_s: float = Field(30.0, ge=0)
    """On SIGTERM, how long queued and running requests may take to finish before the process exits."""
    shutdown_delay_s: float = Field(0.0, ge=0)
    """On SIGTERM, report not-ready and keep serving this long before draining (for load balancers)."""
    drain_stalled_body_s: float = Field(5.0, gt=0)
    """On SIGTERM, an upload still arriving is read to its end (within the drain timeout) and answered; one
    that sends nothing for this long is answered 503 at once."""
    replica_name: str | None = Field(None, pattern=r"^[\x21-\x7e]{1,128}$")
    """Sent as the X-Served-By header of every HTTP answer, so that a client behind a load balancer can tell
    which replica answered (deploy/swarm sets it to the node's hostname and the task's slot); unset: no
    header. 1-128 printable ASCII characters, no spaces."""

    # Security
    api_keys: Annotated[list[str], NoDecode] = []
    """Keys for inference and metadata (comma-separated); empty: no key needed."""
    admin_key: str | None = None
    """Key for /v2/repository/* (load, unload, index); unset with api_keys set: those endpoints are off."""
    auth_health: bool = False
    """Require a key for /v2/health/* too."""
    auth_metrics: bool = False
    """Require a key for /metrics too."""
    auth_docs: bool = False
    """Require a key for /docs, /redoc and /openapi.json too (they list routes and schemas, no models)."""
    cors_origins: Annotated[list[str], NoDecode] = []
    """Origins allowed by CORS (comma-separated, or *); empty: CORS off."""
    playground: bool = True
    """Serve the web playground at / (public page; its requests still need a key when keys are set)."""

    @field_validator("models_dir", mode="before")
    @classmethod
    def _folder_or_uri(cls, value: Any) -> Any:
        return str(value) if isinstance(value, PathLike) else value

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
