"""Repository polling: load new and changed models, unload removed ones, never a copy in progress.

A model's fingerprint is every file's path, size and mtime (hidden files and folders aside). A change is
loaded once the files stay unchanged for a whole poll period, so a folder still being copied is not read
half-written; a copy that stalls longer than that may be tried, fail, and leave the old version serving
until the copy completes (the next change loads it). To make a version appear at once and whole, write
it under a hidden name (``.2.partial``) and rename it (what ``modelserve export`` does).

An s3:// repository is synced into its local cache first (service/repository/s3.py decides which versions
are complete); the cache changes whole versions at once, so a change there is loaded at the first poll that
sees it. A storage error skips that poll: nothing is unloaded because a listing failed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from service.repository.storage import StorageError

if TYPE_CHECKING:
    from service.repository.registry import ModelRepository

log = logging.getLogger(__name__)


class RepositoryPoller:
    """Every ``interval_s``: load what changed and then held still for one period; drop what left."""

    def __init__(self, repository: ModelRepository, interval_s: float) -> None:
        self.repository = repository
        self.interval_s = interval_s
        self._seen: dict[str, tuple[object, ...]] = {}  # as the previous poll saw each model

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.poll_once()
            except Exception:
                log.exception("repository poll failed")

    async def poll_once(self) -> None:
        repo = self.repository
        try:
            await asyncio.to_thread(repo.storage.sync)
        except StorageError as e:
            log.warning("repository poll skipped: %s", e)
            return
        on_disk = set(repo.scan())
        for name in sorted(on_disk):
            current = await asyncio.to_thread(repo.storage.fingerprint, name)
            previous, self._seen[name] = self._seen.get(name), current
            settled = repo.storage.atomic or current == previous
            if repo.changed_on_disk(name, current) and settled:
                log.info("model %s changed on disk: loading", name)
                await repo.load(name)
        for name in sorted(repo.tracked() - on_disk):
            log.info("model %s removed from disk: unloading", name)
            await repo.remove(name)
            self._seen.pop(name, None)
