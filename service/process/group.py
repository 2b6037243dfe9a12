"""Worker processes that act as one server: repository changes reach every worker, readiness covers all.

Each worker listens on a Unix socket in the server's private run folder (``w<index>.sock``) for one JSON
line and answers one: ``{"op": "load"|"unload", "name": ...}`` changes its repository, ``{"op": "status"}``
tells its readiness and models. The worker that receives a repository call sends it to every worker (itself
included, directly) and answers when all have answered, or says which did not. Models unloaded by request
are written to ``unloaded.json`` first, so a worker that starts later (a replacement) does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import Overloaded, ServiceError
from service.repository.registry import ModelRepository
from service.repository.storage import check_name

log = logging.getLogger(__name__)
LOAD_TIMEOUT_S = 300.0  # a big model may take a while to load and warm up on every worker at once
STATUS_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class WorkerIdentity:
    index: int
    count: int
    run_dir: Path

    @property
    def label(self) -> str:
        return f"w{self.index}"

    def socket_path(self, index: int) -> Path:
        return self.run_dir / f"w{index}.sock"


class WorkerGroup:
    def __init__(self, identity: WorkerIdentity) -> None:
        self.identity = identity
        self._server: asyncio.AbstractServer | None = None
        self._repository: ModelRepository | None = None
        self._local_ready: Callable[[], bool] = lambda: False
        self._state_path = identity.run_dir / "unloaded.json"

    # --------------------------------------------------------------------------------- this worker
    async def start(self, repository: ModelRepository, ready: Callable[[], bool]) -> None:
        """Listen before the models load, so a change sent during the load is not missed."""
        self._repository, self._local_ready = repository, ready
        path = self.identity.socket_path(self.identity.index)
        path.unlink(missing_ok=True)  # the socket of the worker this one replaces
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self.identity.socket_path(self.identity.index).unlink(missing_ok=True)

    def unloaded(self) -> set[str]:
        """Models unloaded by request: a starting worker leaves them unloaded too."""
        try:
            return set(json.loads(self._state_path.read_text()))
        except (OSError, ValueError):
            return set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            answer = await self._apply(request.get("op"), request.get("name"))
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except Exception:
            log.exception("control request failed")
        finally:
            writer.close()

    async def _apply(self, op: str | None, name: str | None) -> dict[str, Any]:
        repo = self._repository
        assert repo is not None
        if op == "status":
            return {
                "ready": self._local_ready(),
                "models": {n: [mv.version for mv in repo.versions(n)] for n in repo.names()},
            }
        if op == "stats":  # Triton's statistics extension: the data plane sums every worker's
            return {"stats": [mv.stats.as_dict() for mv in repo.all_versions() if mv.stats is not None]}
        try:
            if op == "load" and name:
                await repo.load_or_fail(name)
            elif op == "unload" and name:
                await repo.unload(name)
            else:
                return {"ok": False, "status": 400, "error": f"unknown control request {op!r}"}
        except ServiceError as e:
            return {"ok": False, "status": e.status_code, "error": e.message}
        except Exception as e:
            log.exception("%s %s failed", op, name)
            return {"ok": False, "status": 500, "error": f"{type(e).__name__}: {e}"}
        return {"ok": True}

    # --------------------------------------------------------------------------------- every worker
    async def _ask(self, index: int, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if index == self.identity.index:
            return await self._apply(request.get("op"), request.get("name"))
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_unix_connection(str(self.identity.socket_path(index)))
                try:
                    writer.write(json.dumps(request).encode() + b"\n")
                    await writer.drain()
                    line = await reader.readline()
                finally:
                    writer.close()
            return dict(json.loads(line))
        except (OSError, ValueError, TimeoutError) as e:
            why = "timed out" if isinstance(e, TimeoutError) else "is not answering (starting or restarting)"
            return {"ok": False, "status": 503, "error": f"worker {index} {why}", "unreachable": True}

    async def _everyone(self, request: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
        asks: list[Awaitable[dict[str, Any]]] = [
            self._ask(i, request, timeout_s) for i in range(self.identity.count)
        ]
        return list(await asyncio.gather(*asks))

    async def change(self, op: str, name: str) -> None:
        """Load or unload ``name`` on every worker; returns when all have, else raises naming who did not."""
        check_name(name)
        with self._state() as unloaded:
            if op == "unload":
                unloaded.add(name)
            else:
                unloaded.discard(name)
        answers = await self._everyone({"op": op, "name": name}, LOAD_TIMEOUT_S)
        failed = {i: a for i, a in enumerate(answers) if not a.get("ok")}
        if not failed:
            return
        if len(failed) == len(answers) and len({a["status"] for a in failed.values()}) == 1:
            raise _error(failed[0]["status"], failed[0]["error"])  # the same answer a single process gives
        done = [str(i) for i in range(len(answers)) if i not in failed]
        reasons = "; ".join(f"worker {i}: {a['error']}" for i, a in failed.items())
        raise Overloaded(
            f"{op} {name!r} done on worker(s) {', '.join(done) or 'none'}, not on the others ({reasons}); "
            "a worker that restarts reads the repository as it now is",
            retry_after_s=2,
        )

    async def statistics(self) -> list[list[dict[str, Any]]]:
        """Every reachable worker's per-version statistics (see service/stats.py), one list per worker."""
        answers = await self._everyone({"op": "stats"}, STATUS_TIMEOUT_S)
        return [a["stats"] for a in answers if "stats" in a]

    async def not_ready(self) -> str | None:
        """Why the server as a whole is not ready (every worker up, ready, serving the same models); None
        when it is."""
        answers = await self._everyone({"op": "status"}, STATUS_TIMEOUT_S)
        for i, a in enumerate(answers):
            if a.get("unreachable"):
                return str(a["error"])
            if not a.get("ready"):
                return f"worker {i} is not ready"
        mine = answers[self.identity.index]["models"]
        for i, a in enumerate(answers):
            if a["models"] != mine:
                return f"worker {i} serves {a['models']}, worker {self.identity.index} {mine}"
        return None

    @contextlib.contextmanager
    def _state(self) -> Iterator[set[str]]:
        """Read-modify-write unloaded.json under a lock (two workers may take repository calls at once)."""
        with open(self.identity.run_dir / "unloaded.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            unloaded = self.unloaded()
            yield unloaded
            tmp = self._state_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(sorted(unloaded)))
            tmp.replace(self._state_path)


def _error(status: int, message: str) -> ServiceError:
    error = ServiceError(message)
    error.status_code = status
    return error
