"""ModelRepository: scan models/, load versions by policy into OnnxModels with batchers, swap atomically.

Layout: models/<name>/config.json (serving knobs, optional) and models/<name>/<version>/model.onnx with
model.json (metadata, optional). A version that fails to load is logged (with the detail) and recorded
with a reason safe to answer (no paths, no library text); the others still serve, and so does whatever
served before a failed reload (Triton's behaviour). A version that requests resolved stays until each of
them is answered (leases), however long their decoding takes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from service.batching import DynamicBatcher
from service.config import Settings
from service.context import current_request_id
from service.errors import BadRequest, NotFound, Overloaded
from service.kinds import InputKind, get_kind
from service.metrics import Metrics, ModelMetrics
from service.model_files import LoadError, ModelMeta
from service.polling import fingerprint
from service.runtime import OnnxModel, Runtime, TensorSpec
from service.stats import FanOut, ModelStats
from service.storage import StorageError, open_storage

log = logging.getLogger(__name__)
# Model names: what a folder may be called and a client may ask for. No dots first (.., hidden folders),
# no separators, no ~: a name can never reach outside the repository.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_name(name: str) -> str:
    """The name, or BadRequest (400) when it could not be a model folder's name."""
    if not MODEL_NAME.fullmatch(name):
        raise BadRequest(
            f"invalid model name {name[:64]!r}: 1-128 letters, digits, '_', '.' or '-', not starting with '.'"
        )
    return name


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


@dataclass
class ModelVersion:
    """One loaded version: its session, its batcher, and what /predict needs to prepare inputs."""

    name: str
    version: int
    path: Path
    meta: ModelMeta
    model: Runtime  # OnnxModel today; the rest of the service needs only the protocol
    batcher: DynamicBatcher
    kind: InputKind
    load_s: float = 0.0
    metrics: ModelMetrics | None = None
    stats: ModelStats | None = None
    users: int = field(default=0, init=False)
    """Requests that resolved this version and are not answered yet (see ``lease``)."""
    _unused: asyncio.Event | None = field(default=None, init=False, repr=False)

    @contextmanager
    def lease(self) -> Iterator[ModelVersion]:
        """Hold this version for one request: a swap retires it only when every holder is done. Take it
        right where the version is resolved, with no await between, so no request can slip past."""
        self.users += 1
        try:
            yield self
        finally:
            self.users -= 1
            if self.users == 0 and self._unused is not None:
                self._unused.set()

    async def wait_unused(self, timeout_s: float) -> bool:
        """Wait (bounded) until no request holds this version; False if some still did at the timeout."""
        if self.users:
            self._unused = asyncio.Event()
            try:
                await asyncio.wait_for(self._unused.wait(), timeout_s)
            except TimeoutError:
                return False
        return True

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
            **self.kind.describe(),
        }


@dataclass
class _Entry:
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    failed: dict[int | str, str] = field(default_factory=dict)
    """Public reasons (no paths) by version; "" for the model as a whole (config.json, no versions)."""


def _load_version(
    name: str, version: int, path: Path, settings: Settings, config: ModelConfig, metrics: Metrics | None
) -> ModelVersion:
    """Blocking: build the session, read metadata, warm up. Runs in a thread."""
    start = time.perf_counter()
    onnx_path = path / "model.onnx"
    if not onnx_path.is_file():
        raise LoadError("model.onnx is missing")
    meta = ModelMeta.read(path)
    kind_cls = get_kind(meta.input_kind)  # before the session: an unknown kind fails fast, by name
    model = OnnxModel(
        onnx_path,
        providers=settings.providers,
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        optimization=settings.graph_optimization_level,
        spin_wait=settings.spin_wait,
    )
    kind = kind_cls.load(meta, path, model)
    model.pad_values.update(kind.pad_values())
    _check_outputs(meta, model)
    model.warm_up()

    def knob(key: str) -> Any:
        value = getattr(config, key)
        return getattr(settings, key) if value is None else value

    model_metrics = metrics.for_model(name, version) if metrics is not None else None
    stats = ModelStats(name, version)
    batcher = DynamicBatcher(
        model.run_batch,
        name=f"{name}:{version}",
        max_batch_size=knob("max_batch_size") if model.batchable else 1,
        max_queue_delay_ms=knob("max_queue_delay_ms"),
        max_queue_size=knob("max_queue_size"),
        timeout_s=knob("timeout_s"),
        instances=knob("instances"),
        observer=FanOut(stats, model_metrics),
        inline_run_ms=settings.inline_run_ms,
    )
    load_s = time.perf_counter() - start
    if model_metrics is not None:
        model_metrics.loaded(load_s)
    return ModelVersion(
        name, version, path, meta, model, batcher, kind, load_s=load_s, metrics=model_metrics, stats=stats
    )


def _check_outputs(meta: ModelMeta, model: OnnxModel) -> None:
    """The scores output and labels must match the graph, or answers would be mislabelled."""
    scores = meta.scores_output or model.outputs[0].name
    if scores not in model.output_names:
        raise LoadError(f"scores output {scores!r} is not a graph output ({model.output_names})")
    width = dict((o.name, o.shape) for o in model.outputs)[scores]
    if meta.labels and len(width) == 2 and width[1] not in (-1, len(meta.labels)):
        raise LoadError(f"{len(meta.labels)} labels but the scores output has {width[1]} columns")


class ModelRepository:
    """Every served model version, by name; loads and unloads swap entries atomically."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        # A folder is loaded in place; s3:// is fetched into a local cache folder (service/storage.py).
        self.storage = open_storage(
            settings.models_dir, settings.models_cache_dir, settle_s=settings.repository_poll_s or 2.0
        )
        self.root = self.storage.root
        self._entries: dict[str, _Entry] = {}
        self._metrics = metrics
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self._unloaded: set[str] = set()  # unloaded by request: polling leaves them alone until they change
        self._fingerprints: dict[str, tuple[object, ...]] = {}  # each model's files as last loaded
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
            check_name(name)  # only on a miss: a served name is valid by construction
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
        """Every failure of the latest loads, by "name" or "name:version", with its public reason."""
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
            for v in sorted(entry.versions):  # a version whose reload failed serves its previous load
                why = entry.failed.get(v)
                reason = f"serving the previous load; reloading failed: {why}" if why else ""
                rows.append({"name": name, "version": str(v), "state": "READY", "reason": reason})
            rows += [
                {"name": name, "version": str(v), "state": "UNAVAILABLE", "reason": why}
                for v, why in entry.failed.items()
                if v not in entry.versions
            ]
        return rows

    def is_ready(self) -> bool:
        """Loaded, and (strict) no model left without a serving version by a failure; a failed reload that
        left the previous version serving does not count (it is in the index, the log and a metric)."""
        if not self.loaded:
            return False
        if self.settings.strict_readiness:
            return not any(e.failed and not e.versions for e in self._entries.values())
        return bool(self.names())

    # ------------------------------------------------------------------------------------ loading
    def scan(self) -> list[str]:
        """Model folders: names that match MODEL_NAME (hidden and odd ones are ignored)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and MODEL_NAME.fullmatch(p.name))

    async def load_all(self, skip: set[str] | frozenset[str] = frozenset()) -> None:
        """Load every model on disk but those in ``skip`` (unloaded by request on the other workers)."""
        await asyncio.to_thread(self.storage.sync, True)  # StorageError: the server cannot start
        names = self.scan()
        if not names:
            log.warning("model repository %s holds no models", self.storage.describe())
        self._unloaded |= skip
        for name in names:
            if name not in self._unloaded:  # also unloaded while this loop ran
                await self.load(name)
        self.loaded = True

    async def load_or_fail(self, name: str) -> None:
        """``load`` for the repository API: NotFound for no such folder, BadRequest when the load failed
        (what served before still serves)."""
        check_name(name)
        try:
            await asyncio.to_thread(self.storage.sync)
        except StorageError as e:
            raise Overloaded(str(e), retry_after_s=5) from None
        if name not in self.scan():
            raise NotFound(f"no model folder {name!r} in the repository")
        await self.load(name)
        entry = self._entries.get(name)
        if entry is None or not entry.versions or entry.failed:
            reasons = "; ".join(
                f"version {v}: {r}" if v != "" else r for v, r in (entry.failed if entry else {}).items()
            )
            serving = ", ".join(str(v) for v in sorted(entry.versions)) if entry else ""
            still = f"; still serving version {serving}" if serving else ""
            raise BadRequest(f"failed to load {name!r}: {reasons or 'no version loaded'}{still}")

    async def load(self, name: str) -> None:
        """(Re)load a model's versions by its policy; new versions replace old ones atomically. A failure
        never takes down what served: the previous versions stay beside what did load."""
        self._unloaded.discard(name)
        self._fingerprints[name] = await asyncio.to_thread(fingerprint, self.root / name)
        async with self._lock:
            old = self._entries.get(name)
            entry = _Entry()
            model_dir = self.root / name
            try:
                config = _read_config(model_dir)
                found = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
                if not found:
                    raise LoadError("the model folder has no numeric version folders")
                wanted = config.select(found)
                if not wanted:
                    raise LoadError(f"version policy {config.version_policy} selects none of {found}")
            except (OSError, ValueError, ValidationError) as e:
                self._failed(entry, name, "", e)
                wanted = []
            for version in wanted:
                try:
                    mv = await asyncio.to_thread(
                        _load_version,
                        name,
                        version,
                        model_dir / str(version),
                        self.settings,
                        config,
                        self._metrics,
                    )
                    await mv.batcher.start()
                except Exception as e:
                    self._failed(entry, name, version, e)
                    continue
                entry.versions[version] = mv
                log.info(
                    "model %s version %d loaded (%s input) in %.0f ms",
                    name,
                    version,
                    mv.input_kind,
                    mv.load_s * 1000,
                )
            if old is not None and entry.failed:
                for v, mv in old.versions.items():
                    if v not in entry.versions and (model_dir / str(v)).is_dir():
                        entry.versions[v] = mv
                        log.warning("model %s: version %d keeps serving after the failed load", name, v)
            self._entries[name] = entry  # the swap: new requests resolve to the new versions from here on
        if old is not None:
            for v, mv in old.versions.items():
                if entry.versions.get(v) is not mv:
                    self._retire(mv)

    def _failed(self, entry: _Entry, name: str, version: int | str, error: Exception) -> None:
        """Record a failure: the detail (paths, library text) to the log, a public reason to answers."""
        what = f"model {name} version {version}" if version != "" else f"model {name}"
        unexpected = not isinstance(error, LoadError | ValidationError | OSError | KeyError)
        by = current_request_id()  # a load the repository API asked for: its answer names this id
        log.error(
            "%s not loaded%s: %s: %s",
            what,
            f" (request {by})" if by else "",
            type(error).__name__,
            error,
            exc_info=unexpected,
            extra={"request_id": by} if by else None,
        )
        entry.failed[version] = public_reason(error)
        if self._metrics is not None:
            self._metrics.load_failures.labels(name).inc()

    def _retire(self, mv: ModelVersion) -> None:
        """An old version answers every request that resolved it (bounded by its timeout and the drain
        timeout), then its batcher stops, in the background."""

        async def retire() -> None:
            bound = mv.batcher.timeout_s + self.settings.drain_timeout_s
            if not await mv.wait_unused(bound):
                log.warning(
                    "model %s:%d retired with %d requests still holding it", mv.name, mv.version, mv.users
                )
            await mv.batcher.close(self.settings.drain_timeout_s)

        task = asyncio.create_task(retire(), name=f"retire-{mv.batcher.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def unload(self, name: str) -> None:
        """Stop serving a model; requests that already resolved it still finish."""
        check_name(name)
        async with self._lock:
            entry = self._entries.pop(name, None)
            if entry is None and name not in self.scan():
                raise NotFound(f"unknown model {name!r}")
            self._unloaded.add(name)
        for mv in entry.versions.values() if entry is not None else ():
            self._retire(mv)

    async def close(self, drain_timeout_s: float = 30.0) -> None:
        entries, self._entries = list(self._entries.values()), {}
        closing = [mv.batcher.close(drain_timeout_s) for e in entries for mv in e.versions.values()]
        await asyncio.gather(*closing, *self._retiring)

    def tracked(self) -> set[str]:
        """Models with a load on record: serving, or failed."""
        return set(self._entries)

    def changed_on_disk(self, name: str, fingerprint: tuple[object, ...]) -> bool:
        """Whether a model's files differ from what its last load read (see service/polling.py)."""
        return fingerprint != self._fingerprints.get(name)

    async def remove(self, name: str) -> None:
        """A model folder left the disk: stop serving it (requests that resolved it still finish)."""
        async with self._lock:
            entry = self._entries.pop(name, None)
        for mv in entry.versions.values() if entry is not None else ():
            self._retire(mv)
        self._fingerprints.pop(name, None)


def public_reason(error: Exception) -> str:
    """What a load failure may tell a client: our own words, never a path or a library's message."""
    if isinstance(error, LoadError):
        return str(error)
    if isinstance(error, ValidationError):
        fields = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        )
        return f"{error.title} is invalid: {fields}"
    if isinstance(error, KeyError):
        return f"model.json lacks the key {error.args[0]!r}" if error.args else "model.json lacks a key"
    if type(error).__module__.startswith("onnxruntime"):
        return f"model.onnx cannot be loaded by onnxruntime ({type(error).__name__})"
    if isinstance(error, OSError):
        return f"a file of this version cannot be read ({error.strerror or type(error).__name__})"
    return f"{type(error).__name__} while loading (details in the server log)"


def _read_config(model_dir: Path) -> ModelConfig:
    path = model_dir / "config.json"
    if not path.is_file():
        return ModelConfig()
    try:
        return ModelConfig.model_validate(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise LoadError(f"config.json is not JSON (line {e.lineno}, column {e.colno})") from None
    except ValidationError as e:
        raise LoadError(public_reason(e).replace(e.title, "config.json", 1)) from None
