"""One entry point for every scheme (KServe's ``download(uri, out_dir)``): a folder or ``s3://bucket/prefix``
becomes a Storage whose local folder the repository loads from."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from service.repository.storage import LocalFolder, Storage, StorageError


def is_uri(location: str | os.PathLike[str]) -> bool:
    """Whether a models location is an object-store URI (``scheme://...``) rather than a folder."""
    return re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", str(location)) is not None


def open_storage(
    location: str | os.PathLike[str], cache_dir: Path | None = None, settle_s: float = 2.0
) -> Storage:
    """The storage for ``MODELSERVE_MODELS_DIR``: a folder, or ``s3://bucket[/prefix]``."""
    text = str(location)
    if not is_uri(text):
        return LocalFolder(Path(text))
    if text.startswith("s3://"):
        from service.repository.s3 import S3Storage  # boto3 is imported only when asked for

        return S3Storage(text, cache_dir or default_cache_dir(), settle_s=settle_s)
    raise StorageError(f"unsupported model storage scheme {text.split('://', 1)[0]!r}: use a folder or s3://")


def download(uri: str, out_dir: Path) -> Path:
    """Fetch a model repository into ``out_dir`` (KServe's ``download``): the folder to load from. A local
    folder is used in place; ``s3://`` copies the complete versions (s3.py)."""
    storage = open_storage(uri, out_dir)
    storage.sync(settle=True)
    return storage.root


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "modelserve-cache"
