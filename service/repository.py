"""ModelRepository: scan models/, load versions by policy into OnnxModels with batchers, swap atomically.

Layout: models/<name>/config.json (serving knobs, optional) and models/<name>/<version>/model.onnx with
model.json (metadata, optional). A version that fails to load is logged and recorded with its reason; the
others still serve.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from service.batching import DynamicBatcher
from service.config import Settings
from service.errors import BadRequest, NotFound
from service.metrics import Metrics, ModelMetrics
from service.preprocess.image import ImageSpec
from service.preprocess.text import Tokenizer
from service.runtime import OnnxModel, TensorSpec

log = logging.getLogger(__name__)
# After a swap, the old version keeps taking requests this long: those that resolved it just before.
RETIRE_GRACE_S = 2.0


class ModelConfig(BaseModel):
    """models/<name>/config.json: what an operator tunes without retraining; unset knobs take Settings'."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int | None = None
    max_queue_delay_ms: float | None = None
    max_queue_size: int | None = None
    timeout_s: float | None = None
    instances: int | None = None
    version_policy: Literal["latest", "all"] | dict[Literal["latest", "specific"], int | list[int]] = "latest"
    """"latest" (the highest version), "all", {"latest": N} or {"specific": [1, 3]}."""

    def select(self, versions: list[int]) -> list[int]:
        versions = sorted(versions)
        policy = self.version_policy
        if policy == "all":
            return versions
        if policy == "latest":
            return versions[-1:]
        if "specific" in policy:
            wanted = policy["specific"]
            return [v for v in versions if v in (wanted if isinstance(wanted, list) else [wanted])]
        n = policy["latest"]
        return versions[-int(n if isinstance(n, int) else 1) :]


class ModelMeta(BaseModel):
    """models/<name>/<version>/model.json, as training/export.py writes it."""

    model_config = ConfigDict(extra="allow")

    task: str = "classification"
    input_kind: Literal["image", "text", "tensor"] = "tensor"
    labels: list[str] = []
    scores_output: str | None = None
    preprocessing: dict[str, Any] = {}


@dataclass
class ModelVersion:
    """One loaded version: its session, its batcher, and what /predict needs to prepare inputs."""

    name: str
    version: int
    path: Path
    meta: ModelMeta
    model: OnnxModel
    batcher: DynamicBatcher
    image_spec: ImageSpec | None = None
    tokenizer: Tokenizer | None = None
    load_s: float = 0.0
    metrics: ModelMetrics | None = None

    @property
    def input_kind(self) -> str:
        return self.meta.input_kind

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.model.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.model.outputs

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": str(self.version),
            "input_kind": self.input_kind,
            "task": self.meta.task,
            "labels": self.meta.labels,
            "inputs": [t.as_dict() for t in self.inputs],
            "outputs": [t.as_dict() for t in self.outputs],
            "max_batch_size": self.batcher.max_batch_size,
        }


@dataclass
class _Entry:
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    failed: dict[int | str, str] = field(default_factory=dict)


def _load_version(
    name: str, version: int, path: Path, settings: Settings, config: ModelConfig, metrics: Metrics | None
) -> ModelVersion:
    """Blocking: build the session, read metadata, warm up. Runs in a thread."""
    start = time.perf_counter()
    onnx_path = path / "model.onnx"
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{onnx_path} is missing")
    meta_path = path / "model.json"
    meta = ModelMeta.model_validate_json(meta_path.read_bytes()) if meta_path.is_file() else ModelMeta()
    image_spec = tokenizer = None
    if meta.input_kind == "image":
        pre = meta.preprocessing["image"]
        image_spec = ImageSpec.from_preprocessing(pre)
    elif meta.input_kind == "text":
        pre = meta.preprocessing["text"]
        tokenizer = Tokenizer.from_preprocessing(pre, model_dir=path)
    model = OnnxModel(
        onnx_path,
        providers=settings.providers,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        optimization=settings.graph_optimization_level,
        spin_wait=settings.spin_wait,
    )
    if tokenizer is not None:  # token ids of different lengths join a batch padded with this
        model.pad_values[model.inputs[0].name] = tokenizer.pad_id
    _check_meta(meta, model, image_spec)
    model.warm_up()

    def knob(key: str) -> Any:
        value = getattr(config, key)
        return getattr(settings, key) if value is None else value

    model_metrics = metrics.for_model(name, version) if metrics is not None else None
    batcher = DynamicBatcher(
        model.run_batch,
        name=f"{name}:{version}",
        max_batch_size=knob("max_batch_size") if model.batchable else 1,
        max_queue_delay_ms=knob("max_queue_delay_ms"),
        max_queue_size=knob("max_queue_size"),
        timeout_s=knob("timeout_s"),
        instances=knob("instances"),
        observer=model_metrics,
    )
    load_s = time.perf_counter() - start
    if model_metrics is not None:
        model_metrics.loaded(load_s)
    return ModelVersion(
        name, version, path, meta, model, batcher, image_spec, tokenizer, load_s=load_s, metrics=model_metrics
    )


def _check_meta(meta: ModelMeta, model: OnnxModel, image_spec: ImageSpec | None) -> None:
    """The metadata must match the graph, or /predict would feed it the wrong tensor."""
    if meta.input_kind == "tensor":
        return
    if len(model.inputs) != 1:
        raise ValueError(
            f"a {meta.input_kind} model needs exactly one input, the graph has {len(model.inputs)}"
        )
    spec = model.inputs[0]
    if image_spec is not None:
        expected = (-1, image_spec.height, image_spec.width, image_spec.channels)
        if spec.datatype != "UINT8" or spec.shape != expected:
            raise ValueError(
                f"image model input must be UINT8 {list(expected)}, graph has {spec.datatype} "
                f"{list(spec.shape)}"
            )
    elif spec.datatype != "INT64" or len(spec.shape) != 2:
        raise ValueError(
            f"text model input must be INT64 [-1, -1], graph has {spec.datatype} {list(spec.shape)}"
        )
    scores = meta.scores_output or model.outputs[0].name
    if scores not in model.output_names:
        raise ValueError(f"scores output {scores!r} is not a graph output ({model.output_names})")
    width = dict((o.name, o.shape) for o in model.outputs)[scores]
    if meta.labels and len(width) == 2 and width[1] not in (-1, len(meta.labels)):
        raise ValueError(f"{len(meta.labels)} labels but the scores output has {width[1]} columns")


class ModelRepository:
    """Every served model version, by name; loads and unloads swap entries atomically."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.root = settings.models_dir
        self._entries: dict[str, _Entry] = {}
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._unloaded: set[str] = set()  # unloaded by request: polling leaves them alone until they change
        self._fingerprints: dict[str, tuple[object, ...]] = {}
        self.loaded = False  # the first scan finished

    # ------------------------------------------------------------------------------------ queries
    def names(self) -> list[str]:
        return sorted(n for n, e in self._entries.items() if e.versions)

    def versions(self, name: str) -> list[ModelVersion]:
        entry = self._entries.get(name)
        return [entry.versions[v] for v in sorted(entry.versions)] if entry else []

    def all_versions(self) -> list[ModelVersion]:
        return [mv for name in self.names() for mv in self.versions(name)]

    def get(self, name: str, version: str | int | None = None) -> ModelVersion:
        """The named version, or the highest loaded one; NotFound names what exists."""
        entry = self._entries.get(name)
        if entry is None or not entry.versions:
            known = ", ".join(self.names()) or "none"
            reason = (
                f" (failed to load: {'; '.join(entry.failed.values())})" if entry and entry.failed else ""
            )
            raise NotFound(f"unknown model {name!r}{reason}; served models: {known}")
        if version in (None, ""):
            return entry.versions[max(entry.versions)]
        try:
            number = int(version)
        except ValueError:
            raise NotFound(f"model {name!r} has no version {version!r}: versions are integers") from None
        if number not in entry.versions:
            have = ", ".join(str(v) for v in sorted(entry.versions))
            raise NotFound(f"model {name!r} has no loaded version {number}; loaded: {have}")
        return entry.versions[number]

    def failures(self) -> dict[str, str]:
        return {
            f"{name}" + (f":{v}" if v != "" else ""): reason
            for name, e in sorted(self._entries.items())
            for v, reason in e.failed.items()
        }

    def index(self) -> list[dict[str, Any]]:
        """Triton's repository index: every model on disk or loaded, each version's state."""
        rows: list[dict[str, Any]] = []
        for name in sorted(set(self.scan()) | self._entries.keys()):
            entry = self._entries.get(name)
            if entry is None:
                reason = "unloaded" if name in self._unloaded else "not loaded"
                rows.append({"name": name, "version": "", "state": "UNAVAILABLE", "reason": reason})
                continue
            rows += [
                {"name": name, "version": str(v), "state": "READY", "reason": ""}
                for v in sorted(entry.versions)
            ]
            rows += [
                {"name": name, "version": str(v), "state": "UNAVAILABLE", "reason": why}
                for v, why in entry.failed.items()
            ]
        return rows

    def is_ready(self) -> bool:
        if not self.loaded:
            return False
        if self.settings.strict_readiness:
            return not self.failures()
        return bool(self.names())

    # ------------------------------------------------------------------------------------ loading
    def scan(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    async def load_all(self) -> None:
        names = self.scan()
        if not names:
            log.warning("model repository %s holds no models", self.root)
        for name in names:
            await self.load(name)
        self.loaded = True

    async def load_or_fail(self, name: str) -> None:
        """``load`` for the repository API: NotFound for no such folder, BadRequest when nothing loaded."""
        if name not in self.scan():
            raise NotFound(f"no model folder {name!r} in the repository {self.root}")
        await self.load(name)
        entry = self._entries.get(name)
        if entry is None or not entry.versions or entry.failed:
            reasons = "; ".join(
                f"{v}: {r}" if v != "" else r for v, r in (entry.failed if entry else {}).items()
            )
            raise BadRequest(f"failed to load {name!r}: {reasons or 'no version loaded'}")

    async def load(self, name: str) -> None:
        """(Re)load a model's versions by its policy; new versions replace old ones atomically."""
        self._unloaded.discard(name)
        self._fingerprints[name] = await asyncio.to_thread(self._fingerprint, name)
        async with self._lock:
            old = self._entries.get(name)
            entry = _Entry()
            model_dir = self.root / name
            try:
                config = _read_config(model_dir)
                found = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
                if not found:
                    raise FileNotFoundError(f"{model_dir} has no numeric version folders")
                wanted = config.select(found)
                if not wanted:
                    raise FileNotFoundError(f"version policy {config.version_policy} selects none of {found}")
            except (OSError, ValueError, ValidationError) as e:
                log.error("model %s not loaded: %s", name, e)
                entry.failed[""] = str(e)
                if self._metrics is not None:
                    self._metrics.load_failures.labels(name).inc()
                wanted = []
            for version in wanted:
                path = model_dir / str(version)
                try:
                    mv = await asyncio.to_thread(
                        _load_version, name, version, path, self.settings, config, self._metrics
                    )
                    await mv.batcher.start()
                except Exception as e:
                    log.error("model %s version %d not loaded: %s: %s", name, version, type(e).__name__, e)
                    entry.failed[version] = f"{type(e).__name__}: {e}"
                    if self._metrics is not None:
                        self._metrics.load_failures.labels(name).inc()
                    continue
                entry.versions[version] = mv
                log.info(
                    "model %s version %d loaded (%s input) in %.0f ms",
                    name,
                    version,
                    mv.input_kind,
                    mv.load_s * 1000,
                )
            self._entries[name] = entry  # the swap: new requests resolve to the new versions from here on
        if old is not None:
            self._retire(old)

    def _retire(self, entry: _Entry) -> None:
        """Old versions finish what is queued, and what was already headed their way, in the background."""
        for mv in entry.versions.values():
            task = asyncio.create_task(
                mv.batcher.close(grace_s=RETIRE_GRACE_S), name=f"retire-{mv.batcher.name}"
            )
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def unload(self, name: str) -> None:
        """Stop serving a model; requests already queued for it still finish."""
        async with self._lock:
            entry = self._entries.pop(name, None)
            if entry is None and name not in self.scan():
                raise NotFound(f"unknown model {name!r}")
            self._unloaded.add(name)
        if entry is not None:
            self._retire(entry)

    async def close(self, drain_timeout_s: float = 30.0) -> None:
        entries, self._entries = list(self._entries.values()), {}
        closing = [mv.batcher.close(drain_timeout_s) for e in entries for mv in e.versions.values()]
        await asyncio.gather(*closing, *self._retiring)

    # ------------------------------------------------------------------------------------ polling
    def _fingerprint(self, name: str) -> tuple[object, ...]:
        """What changes when a model's files do: every file's path, size and mtime (hidden ones aside)."""
        root = self.root / name
        found = []
        try:
            for path in root.rglob("*"):
                rel = path.relative_to(root)
                if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                    stat = path.stat()
                    found.append((str(rel), stat.st_size, stat.st_mtime_ns))
        except OSError:
            return ()
        return tuple(sorted(found))

    async def poll_forever(self, interval_s: float) -> None:
        """Load new and changed models, unload removed ones, every ``interval_s`` seconds."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.poll_once()
            except Exception:
                log.exception("repository poll failed")

    async def poll_once(self) -> None:
        on_disk = set(self.scan())
        for name in sorted(on_disk):
            current = await asyncio.to_thread(self._fingerprint, name)
            if current != self._fingerprints.get(name):
                log.info("model %s changed on disk: loading", name)
                await self.load(name)
        for name in sorted(self._entries.keys() - on_disk):
            log.info("model %s removed from disk: unloading", name)
            async with self._lock:
                entry = self._entries.pop(name, None)
            if entry is not None:
                self._retire(entry)
            self._fingerprints.pop(name, None)


def _read_config(model_dir: Path) -> ModelConfig:
    path = model_dir / "config.json"
    if not path.is_file():
        return ModelConfig()
    try:
        return ModelConfig.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON: {e}") from None
