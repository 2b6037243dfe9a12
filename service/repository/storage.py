"""Where model folders live; the server always loads from a local folder (KServe's storage habit).

``MODELSERVE_MODELS_DIR`` is a local folder (``LocalFolder``: loaded in place) or ``s3://bucket/prefix``
(``S3Storage`` in s3.py: complete versions fetched into a local cache folder, which it then serves as a
``LocalFolder``). Both have the same layout, ``<model>/config.json`` and ``<model>/<version>/...``, and the
same few calls (``Storage``), so the registry and the poller never see the difference.
``download(uri, out_dir)`` (download.py) is the one entry point that dispatches on the scheme.

A model name is what a folder may be called and a client may ask for: no dots first (.., hidden folders),
no separators, no ~, so a name can never reach outside the repository.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Protocol

from service.errors import BadRequest

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
# A version folder is named by its number as written, in ASCII digits with no leading zero: "01" beside "1"
# would be two folders for one version (which loads?), and "01" alone would be looked for as "1".
VERSION_NAME = re.compile(r"0|[1-9][0-9]{0,17}")

log = logging.getLogger(__name__)
_told: set[tuple[str, str]] = set()  # (model, folder) already warned about


def misnamed_version(name: str) -> bool:
    """A folder of digits that is not a version's name ("01", or another script's digits): not read as a
    version, and said so (a local folder and an S3 store alike)."""
    return name.isdigit() and not VERSION_NAME.fullmatch(name)


class StorageError(RuntimeError):
    """The model storage failed; the message is safe to answer and log (no bucket, key or credential)."""


def check_name(name: str) -> str:
    """The name, or BadRequest (400) when it could not be a model folder's name."""
    if not MODEL_NAME.fullmatch(name):
        raise BadRequest(
            f"invalid model name {name[:64]!r}: 1-128 letters, digits, '_', '.' or '-', not starting with '.'"
        )
    return name


def fingerprint(root: Path) -> tuple[object, ...]:
    """What changes when a model's files do: every file's path, size and mtime (hidden ones aside)."""
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


class Storage(Protocol):
    """What the registry and the poller use: a local folder to load from, kept up to date by ``sync``."""

    root: Path
    """The local folder the repository scans and loads from."""
    atomic: bool
    """The folder changes whole versions at once (a fetch into a cache): no need to wait for it to settle."""

    def scan(self) -> list[str]: ...
    def model_dir(self, name: str) -> Path: ...
    def version_numbers(self, name: str) -> list[int]: ...
    def fingerprint(self, name: str) -> tuple[object, ...]: ...

    def describe(self) -> str:
        """What to log: no bucket, key or credential."""
        ...

    def check(self) -> None:
        """Raise StorageError at once when the storage cannot be read (startup)."""
        ...

    def sync(self, settle: bool = False, wait_s: float | None = None) -> None:
        """Blocking: bring ``root`` up to date (a no-op for a local folder); ``settle``: wait once for
        versions whose completeness needs a second listing (startup); ``wait_s``: how long to wait for a
        sync already running (None: as long as it takes). Raises StorageError, changing nothing."""
        ...


class LocalFolder:
    """A model repository on the local file system: models/<name>/[config.json, <version>/...]. Loaded in
    place: the poller waits for copies into it to settle (polling.py)."""

    atomic = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def scan(self) -> list[str]:
        """Model folders: names that match MODEL_NAME (hidden and odd ones are ignored)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and MODEL_NAME.fullmatch(p.name))

    def model_dir(self, name: str) -> Path:
        return self.root / name

    def version_numbers(self, name: str) -> list[int]:
        """The version folders of a model, by number (VERSION_NAME; OSError when the model folder cannot be
        read). A folder of digits written another way ("01") is not a version: warned about once."""
        found = []
        for p in self.model_dir(name).iterdir():
            if not p.is_dir():
                continue
            if VERSION_NAME.fullmatch(p.name):
                found.append(int(p.name))
            elif misnamed_version(p.name) and (name, p.name) not in _told:
                _told.add((name, p.name))
                log.warning(
                    "model %s: folder %r is not read as a version: name a version folder by its number "
                    "without leading zeros",
                    name,
                    p.name,
                )
        return sorted(found)

    def fingerprint(self, name: str) -> tuple[object, ...]:
        """Blocking (run it in a thread): see ``fingerprint``."""
        return fingerprint(self.model_dir(name))

    def describe(self) -> str:
        return str(self.root)

    def check(self) -> None:
        pass

    def sync(self, settle: bool = False, wait_s: float | None = None) -> None:
        pass
