"""Models from S3: ``s3://bucket/prefix`` mirrored into a local cache folder that the repository loads.

When an S3 version is complete (docs/operations.md, "Models from S3"):
- a version with the marker object ``<model>/<version>/_COMPLETE`` is complete; write the marker last, as
  a separate step after every other file is uploaded. Writing it again (a new LastModified) replaces the
  version;
- once any version of a model has a marker, that model's versions without one are still uploading;
- a model that uses no markers: a version is complete when it holds ``model.onnx`` and its listing (every
  key, size and ETag) is the same in two listings one poll period apart (at startup: ``settle_s`` apart).
A version whose objects are all gone is removed; one still being replaced keeps its cached copy.

The S3 client is boto3 (credentials from the standard AWS chain, the endpoint from ``AWS_ENDPOINT_URL``).
Every error is a ``StorageError`` whose message names neither the bucket nor a key nor a credential.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.repository.storage import (
    MODEL_NAME,
    VERSION_NAME,
    LocalFolder,
    StorageError,
    misnamed_version,
)

log = logging.getLogger(__name__)

MARKER = "_COMPLETE"
"""Written last into an S3 version's folder: the version is complete (never copied into the cache)."""
SOURCE = ".source.json"
"""Beside a cached file or in a cached version's folder: what it was fetched from (hidden: never loaded)."""
# Object-key parts that may become local path parts: no empty, '.', '..' or hidden parts, no backslash, at
# most a file name's 255 bytes (a longer one cannot be written here).
_PART = re.compile(r"[^./\\][^/\\]*")
_PART_BYTES = 255


def _part(part: str) -> bool:
    return bool(_PART.fullmatch(part)) and len(part.encode()) <= _PART_BYTES


# ------------------------------------------------------------------------------------------------ S3
@dataclass
class _Object:
    key: str
    size: int
    etag: str
    modified: str = ""
    """LastModified: what tells a re-written empty marker from the old one (their ETags are equal)."""

    def ident(self) -> list[Any]:
        return [self.key, self.size, self.etag]


@dataclass
class _Model:
    config: _Object | None = None
    versions: dict[str, dict[str, _Object]] = field(default_factory=dict)
    """version -> path inside the version folder -> object."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ("bucket", "a/b/"); the prefix is "" or ends with "/"."""
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise StorageError("the s3:// URI names no valid bucket (3-63 lowercase letters, digits, '.', '-')")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def _client_error(error: Exception) -> StorageError:
    """A boto3 error in words that name no bucket, key or credential."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        NoCredentialsError,
        ReadTimeoutError,
    )
    from botocore.exceptions import (
        ConnectionError as Unreachable,
    )

    if isinstance(error, NoCredentialsError):
        return StorageError("model storage error: no AWS credentials (set AWS_ACCESS_KEY_ID and co.)")
    if isinstance(error, ConnectionClosedError):
        return StorageError(
            "model storage error: the storage endpoint closed the connection without answering "
            "(is AWS_ENDPOINT_URL an S3 endpoint?)"
        )
    if isinstance(error, Unreachable | ConnectTimeoutError):  # refused, unresolvable, proxy
        return StorageError("model storage error: the storage endpoint cannot be reached")
    if isinstance(error, ReadTimeoutError):
        return StorageError("model storage error: the storage endpoint timed out")
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", "unknown"))
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken"):
            return StorageError(f"model storage error: access denied ({code}): check the AWS credentials")
        if code in ("NoSuchBucket", "404"):
            return StorageError("model storage error: the bucket does not exist")
        return StorageError(f"model storage error: the store answered {code}")
    return StorageError(f"model storage error: {type(error).__name__}")


class S3Storage(LocalFolder):
    """An ``s3://bucket/prefix`` repository mirrored into ``cache_dir``: complete versions only, each
    fetched into a hidden folder and renamed into place, so the repository sees whole versions; the
    cache is then served as a local folder."""

    atomic = True

    def __init__(self, uri: str, cache_dir: Path, settle_s: float = 2.0) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = parse_s3_uri(uri)
        self.settle_s = settle_s
        # One cache folder per URI: two repositories never share (or delete) each other's files.
        super().__init__(cache_dir / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16])
        self.root.mkdir(parents=True, exist_ok=True)
        # S3-compatible stores (AWS_ENDPOINT_URL) are addressed by path: bucket.host names need DNS that a
        # SeaweedFS or MinIO service name does not have. Bounded timeouts and retries: never a hang.
        addressing = "path" if os.environ.get("AWS_ENDPOINT_URL") else "auto"
        config = Config(
            connect_timeout=5,
            read_timeout=10,  # no byte for 10 s: the store stopped answering (3 tries: a call gives up in ~30 s)
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": addressing},
        )
        try:
            self._client = boto3.session.Session().client("s3", config=config)
        except Exception as e:  # a malformed endpoint URL or region
            raise StorageError(
                f"model storage error: the S3 client cannot start ({type(e).__name__})"
            ) from None
        self._seen: dict[tuple[str, str], list[Any]] = {}  # marker-less versions' previous listings
        self._told: set[str] = set()  # skipped names already logged
        self._unwritable: set[tuple[str, str, str]] = set()  # (model, version, identity) not fetchable

    def describe(self) -> str:
        return "an S3 bucket (cached locally)"

    def check(self) -> None:
        try:
            self._client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except Exception as e:
            raise _client_error(e) from None

    # ---------------------------------------------------------------------------------- listing
    def _list(self) -> dict[str, _Model]:
        models: dict[str, _Model] = {}
        skipped: set[str] = set()
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    key = item["Key"]
                    parts = key[len(self.prefix) :].split("/")
                    if len(parts) < 2 or not _PART.fullmatch(parts[0]):
                        continue  # folder placeholders, hidden or unsafe names: never fetched
                    if not MODEL_NAME.fullmatch(parts[0]):
                        skipped.add(parts[0])  # a name no request could ask for (too long, ...)
                        continue
                    if not all(_part(p) for p in parts[1:]):
                        continue
                    modified = item.get("LastModified")
                    obj = _Object(
                        key,
                        int(item["Size"]),
                        str(item.get("ETag", "")),
                        modified.isoformat() if modified else "",
                    )
                    model = models.setdefault(parts[0], _Model())
                    if len(parts) == 2 and parts[1] == "config.json":
                        model.config = obj
                    elif len(parts) >= 3 and VERSION_NAME.fullmatch(parts[1]):
                        model.versions.setdefault(parts[1], {})["/".join(parts[2:])] = obj
                    elif len(parts) >= 3 and misnamed_version(parts[1]):
                        skipped.add(f"{parts[0]}/{parts[1]}")
        except Exception as e:
            raise _client_error(e) from None
        if skipped - self._told:
            log.warning(
                "folders that are no model name (1-128 letters, digits, '_', '.' or '-') or no version number "
                "(digits without a leading zero), not fetched: %s",
                ", ".join(sorted(repr(n[:64]) for n in skipped - self._told)),
            )
            self._told |= skipped
        return models

    def _plan(self, name: str, model: _Model) -> tuple[dict[str, list[Any]], set[str], set[str]]:
        """(complete versions -> identity, versions still uploading, those of them that wait only for a
        second equal listing) by the rules in the module docstring."""
        uses_markers = any(MARKER in files for files in model.versions.values())
        cached = self._cached_ident(name)
        complete: dict[str, list[Any]] = {}
        pending: set[str] = set()
        settling: set[str] = set()
        for version, files in model.versions.items():
            listing = sorted(o.ident() for o in files.values())
            if uses_markers:
                # Without its marker still uploading; a marker alone (written under the wrong version?)
                # has nothing to serve either.
                if MARKER in files and "model.onnx" in files:
                    marker = files[MARKER]
                    complete[version] = ["marker", *marker.ident(), marker.modified]
                else:
                    pending.add(version)
            elif "model.onnx" not in files:
                pending.add(version)
            elif self._seen.get((name, version)) == listing or cached.get(version) == ["listing", listing]:
                # Stable for a poll period, or cached from this very listing (a restart need not settle).
                complete[version] = ["listing", listing]
            else:
                pending.add(version)
                settling.add(version)
            self._seen[(name, version)] = listing
        return complete, pending, settling

    # ---------------------------------------------------------------------------------- sync
    def sync(self, settle: bool = False, wait_s: float | None = None) -> None:
        with self._locked(wait_s):
            models = self._list()
            plans = {name: self._plan(name, m) for name, m in models.items()}
            if settle and any(settling for _, _, settling in plans.values()):
                # Marker-less versions need a second, equal listing: take it now rather than a poll later.
                time.sleep(self.settle_s)
                models = self._list()
                plans = {name: self._plan(name, m) for name, m in models.items()}
            for name in sorted(models):
                complete, pending, _ = plans[name]
                try:
                    self._sync_model(name, models[name], complete, pending)
                except OSError as e:  # the cache's own file system (full disk, ...): the other models go on
                    log.warning("model %s not synced: %s: %s", name, type(e).__name__, e.strerror or e)
            for stale in self._local_models() - set(models):
                log.info("model %s is gone from the store: removing its cached copy", stale)
                self._remove(self.root / stale)
            self._seen = {k: v for k, v in self._seen.items() if k[0] in models}

    def _sync_model(
        self, name: str, model: _Model, complete: dict[str, list[Any]], pending: set[str]
    ) -> None:
        folder = self.root / name
        have = self._cached_ident(name)
        if not complete and not have:
            return  # nothing whole to serve yet: no folder (an empty one would be a failed model)
        folder.mkdir(exist_ok=True)
        for version, ident in sorted(complete.items()):
            if have.get(version) == ident or (name, version, repr(ident)) in self._unwritable:
                continue
            try:
                self._fetch_version(folder, version, model.versions[version], ident)
            except StorageError as e:
                log.warning("model %s version %s not fetched: %s", name, version, e)
            except OSError as e:  # keys that cannot all be files here ('a' and 'a/b' both objects, ...)
                self._unwritable.add((name, version, repr(ident)))  # tried again once it is uploaded anew
                log.warning(
                    "model %s version %s not fetched: its objects cannot be written as files (%s)",
                    name,
                    version,
                    e.strerror or type(e).__name__,
                )
        for version in set(have) - set(complete) - pending:
            log.info("model %s version %s is gone from the store: removing its cached copy", name, version)
            self._remove(folder / version)
        if not self._cached_ident(name):
            self._remove(folder)  # no version left: the model is gone, not a model that failed
            return
        self._fetch_config(folder, model.config)

    def _fetch_version(self, folder: Path, version: str, files: dict[str, _Object], ident: list[Any]) -> None:
        partial = folder / f".{version}.partial-{uuid.uuid4().hex[:8]}"
        try:
            partial.mkdir()
            for rel, obj in files.items():
                if rel == MARKER:
                    continue
                self._get(obj, partial / rel)
            (partial / SOURCE).write_text(json.dumps(ident))
            target = folder / version
            if target.exists():  # replaced: move the old copy aside first (a rename cannot overwrite)
                self._remove(target)
            partial.rename(target)
            log.info("model %s version %s fetched", folder.name, version)
        finally:
            if partial.exists():
                shutil.rmtree(partial, ignore_errors=True)

    def _fetch_config(self, folder: Path, config: _Object | None) -> None:
        path, source = folder / "config.json", folder / f".config{SOURCE}"
        if config is None:
            path.unlink(missing_ok=True)
            source.unlink(missing_ok=True)
            return
        ident = json.dumps(config.ident())
        if path.is_file() and source.is_file() and source.read_text() == ident:
            return
        partial = folder / f".config.json.partial-{uuid.uuid4().hex[:8]}"
        try:
            self._get(config, partial)
            partial.replace(path)  # atomic: a reader sees the old or the new config.json
            source.write_text(ident)
        except (StorageError, OSError) as e:
            log.warning("model %s config.json not fetched: %s", folder.name, e)
        finally:
            partial.unlink(missing_ok=True)

    def _get(self, obj: _Object, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client.download_file(self.bucket, obj.key, str(path))
        except Exception as e:
            raise _client_error(e) from None
        if path.stat().st_size != obj.size:
            raise StorageError("model storage error: an object changed while it was fetched")

    # ---------------------------------------------------------------------------------- the cache
    def _local_models(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_dir() and _PART.fullmatch(p.name)}

    def _cached_ident(self, name: str) -> dict[str, list[Any]]:
        """Cached versions of a model -> the identity they were fetched with."""
        folder = self.root / name
        found: dict[str, list[Any]] = {}
        if folder.is_dir():
            for version in folder.iterdir():
                if VERSION_NAME.fullmatch(version.name) and version.is_dir():
                    try:
                        found[version.name] = json.loads((version / SOURCE).read_text())
                    except (OSError, ValueError):
                        found[version.name] = []  # unknown: fetched again
        return found

    def _remove(self, path: Path) -> None:
        """Rename aside (atomic: the repository never sees half a folder), then delete."""
        trash = path.with_name(f".{path.name}.removed-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(FileNotFoundError):
            path.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self, wait_s: float | None = None) -> Iterator[None]:
        """One sync at a time per cache folder: workers share it, the first fetches, the others find it.
        ``wait_s``: StorageError when another sync holds it that long (a store that stopped answering
        holds a sync for its timeouts and retries: a repository API call answers 503, not waits)."""
        with (self.root / ".lock").open("a") as handle:
            if wait_s is None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + wait_s
                while True:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise StorageError(
                                "model storage error: a sync with the store is still running (the store "
                                "may be slow to answer); retry"
                            ) from None
                        time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
