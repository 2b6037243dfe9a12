"""Where model folders live. Today a local folder; another backend (an object store fetched into a local
cache) implements the same few calls, and the registry and the poller never see the difference.

A model name is what a folder may be called and a client may ask for: no dots first (.., hidden folders),
no separators, no ~, so a name can never reach outside the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

from service.errors import BadRequest

MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


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


class LocalFolder:
    """A model repository on the local file system: models/<name>/[config.json, <version>/...]."""

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
        """The numeric version folders of a model (OSError when the model folder cannot be read)."""
        return sorted(int(p.name) for p in self.model_dir(name).iterdir() if p.is_dir() and p.name.isdigit())

    def fingerprint(self, name: str) -> tuple[object, ...]:
        """Blocking (run it in a thread): see ``fingerprint``."""
        return fingerprint(self.model_dir(name))
