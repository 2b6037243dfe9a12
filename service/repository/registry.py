"""ModelRepository: every served version by name; loads versions by policy (loading.py), swaps atomically.

Layout: models/<name>/config.json (serving knobs, optional) and models/<name>/<version>/model.onnx with
model.json (metadata, optional). A version that fails to load is logged (with the detail) and recorded
with a reason safe to answer (no paths, no library text); the others still serve, and so does whatever
served before a failed reload (Triton's behaviour). A version that requests resolved stays until each of
them is answered (leases), however long their decoding takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from service.config import Settings
from service.context import current_request_id
from service.errors import BadRequest, LoadError, NotFound, Overloaded
from service.metrics import Metrics
from service.repository.download import open_storage
from service.repository.loading import load_version, public_reason
from service.repository.model_files import read_config
from service.repository.storage import StorageError, check_name
from service.repository.versions import ModelVersion

log = logging.getLogger(__name__)


# How long a repository API call waits for a sync already running before it answers 503 (Retry-After).
SYNC_WAIT_S = 5.0


def give_back_memory(threads: list[threading.Thread]) -> None:
    """Once a retired version's inference threads have ended (they hold its session): collect it, and
    hand the heap's free pages back to the kernel. glibc keeps what a freed session and graph leave in
    its heap: each reload of the 90 MB transformer grew a worker by ~95 MB for good (a reload loop took
    one to 4.5 GB) though nothing of the old version was alive; malloc_trim returns it."""
    for thread in threads:
        thread.join(timeout=30)
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


def _give_back_later(threads: list[threading.Thread]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop's executor is shutting down: so is the process
        asyncio.get_running_loop().run_in_executor(None, give_back_memory, threads)


def _libc_malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; musl and others have none
    except (OSError, AttributeError):
        return None


_malloc_trim = _libc_malloc_trim()


@dataclass
class _Entry:
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    failed: dict[int | str, str] = field(default_factory=dict)
    """Public reasons (no paths) by version; "" for the model as a whole (config.json, no versions)."""


class ModelRepository:
    """Every served model version, by name; loads and unloads swap entries atomically."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        # A folder is loaded in place; s3:// is fetched into a local cache folder (storage.py, s3.py).
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
        return self.storage.scan()

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
        try:  # a sync already running (a poll) is waited for a few seconds, not for its store's timeouts
            await asyncio.to_thread(self.storage.sync, False, SYNC_WAIT_S)
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
        self._fingerprints[name] = await asyncio.to_thread(self.storage.fingerprint, name)
        async with self._lock:
            old = self._entries.get(name)
            entry = _Entry()
            model_dir = self.storage.model_dir(name)
            try:
                config = read_config(model_dir)
                found = self.storage.version_numbers(name)
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
                        load_version,
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
            bound = mv.batcher.policy.timeout_s + self.settings.drain_timeout_s
            if not await mv.wait_unused(bound):
                log.warning(
                    "model %s:%d retired with %d requests still holding it", mv.name, mv.version, mv.users
                )
            await mv.batcher.close(self.settings.drain_timeout_s)

        task = asyncio.create_task(retire(), name=f"retire-{mv.batcher.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        # Its memory goes back once nothing holds it (the task's frame did): off the loop, it waits for
        # the inference threads.
        threads = list(mv.batcher.threads)
        task.add_done_callback(lambda _: _give_back_later(threads))

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
        """Whether a model's files differ from what its last load read (see polling.py)."""
        return fingerprint != self._fingerprints.get(name)

    async def remove(self, name: str) -> None:
        """A model folder left the disk: stop serving it (requests that resolved it still finish)."""
        async with self._lock:
            entry = self._entries.pop(name, None)
        for mv in entry.versions.values() if entry is not None else ():
            self._retire(mv)
        self._fingerprints.pop(name, None)
