"""The floor: the least a Python server can do to answer a V2 JSON infer request, to measure against.

    python -m bench.floor_server --port 8092 --repository DIR [--workers 2]

uvloop, httptools' parser, orjson and numpy, as modelserve uses them, and nothing else: no access log, no
metrics, no statistics, no request id, no validation beyond what numpy refuses, no timeouts, no drain.
Every request parsed in one loop step joins one batch per model, run on the event loop (no thread
hand-off) and answered with one write per request. ``--workers`` processes share one listening socket.

It is a benchmark peer, not a server: a malformed request closes its connection. bench.cpu --floor runs it
beside modelserve, to show how much of a request's CPU any Python server on this stack pays.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import httptools
import numpy as np
import onnxruntime as ort
import orjson
import uvloop

_TYPES = {"FP32": np.float32, "INT64": np.int64, "UINT8": np.uint8, "INT32": np.int32}
_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"


class Model:
    def __init__(self, name: str, path: Path) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.name = name
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]


class Batches:
    """The requests parsed in this loop step, by model; run at the end of the step (or, with ``thread``,
    on a worker thread, the next batch formed from what arrived meanwhile). With ``tasks``, each request
    is answered by a task of its own awaiting its future, as an ASGI server answers; without, the batch's
    end writes every answer."""

    def __init__(self, models: dict[str, Model], thread: bool, tasks: bool) -> None:
        self.models = models
        self.tasks = tasks
        self.pending: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
        self.scheduled = False
        self.running = False
        self.loop = asyncio.get_running_loop()
        self.jobs: queue.SimpleQueue[Any] | None = None
        if thread:
            self.jobs = queue.SimpleQueue()
            threading.Thread(target=self._worker, daemon=True).start()

    def add(self, conn: Floor, model: str, doc: dict[str, Any]) -> None:
        target: Any = conn
        if self.tasks:
            target = self.loop.create_future()
            self.loop.create_task(self._answer(conn, model, target))
        self.pending.setdefault(model, []).append((target, doc))
        if not self.scheduled and not self.running:
            self.scheduled = True
            self.loop.call_soon(self.run)

    def run(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, {}
        for name, calls in pending.items():
            model = self.models[name]
            arrays = []
            for _, doc in calls:
                tensor = doc["inputs"][0]
                arrays.append(
                    np.asarray(tensor["data"], dtype=_TYPES[tensor["datatype"]]).reshape(tensor["shape"])
                )
            if self.jobs is not None:
                self.running = True
                self.jobs.put((model, calls, arrays))
                continue
            self._deliver(
                model, calls, arrays, model.session.run(None, {model.input: np.concatenate(arrays)})
            )

    def _worker(self) -> None:
        assert self.jobs is not None
        while True:
            model, calls, arrays = self.jobs.get()
            results = model.session.run(None, {model.input: np.concatenate(arrays)})
            self.loop.call_soon_threadsafe(self._ran, model, calls, arrays, results)

    def _ran(self, model: Model, calls: list[Any], arrays: list[np.ndarray], results: list[Any]) -> None:
        self.running = False
        self._deliver(model, calls, arrays, results)
        if self.pending and not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.run)

    def _deliver(self, model: Model, calls: list[Any], arrays: list[np.ndarray], results: list[Any]) -> None:
        start = 0
        for (target, _), arr in zip(calls, arrays, strict=True):
            rows = arr.shape[0]
            outputs = [r[start : start + rows] for r in results]
            start += rows
            if self.tasks:
                target.set_result(outputs)
            else:
                target.transport.write(_encode(model, outputs))

    async def _answer(self, conn: Floor, name: str, future: asyncio.Future[Any]) -> None:
        outputs = await future
        conn.transport.write(_encode(self.models[name], outputs))


def _encode(model: Model, outputs: list[np.ndarray]) -> bytes:
    body = orjson.dumps(
        {
            "model_name": model.name,
            "outputs": [
                {"name": n, "datatype": "FP32", "shape": list(r.shape), "data": r.ravel().tolist()}
                for n, r in zip(model.outputs, outputs, strict=True)
            ],
        }
    )
    return _HEAD % len(body) + body


class Floor(asyncio.Protocol):
    def __init__(self, batches: Batches) -> None:
        self.batches = batches
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        if self.parser.get_method() != b"POST":  # health checks
            self.transport.write(_HEAD % 2 + b"{}")
            return
        model = self.url.split(b"/")[3].decode()  # /v2/models/{name}/infer
        self.batches.add(self, model, orjson.loads(body))


def serve(sock: socket.socket, models: dict[str, Model], thread: bool, tasks: bool) -> None:
    async def main() -> None:
        batches = Batches(models, thread, tasks)
        server = await asyncio.get_running_loop().create_server(lambda: Floor(batches), sock=sock)
        await server.serve_forever()

    uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--thread", action="store_true", help="run batches on a worker thread")
    parser.add_argument("--tasks", action="store_true", help="a task per request, awaiting its future")
    args = parser.parse_args()
    sock = socket.create_server(("127.0.0.1", args.port), backlog=1024)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            models = {}
            for folder in sorted(p for p in args.repository.iterdir() if p.is_dir()):
                latest = max((v for v in folder.iterdir() if v.name.isdigit()), key=lambda v: int(v.name))
                models[folder.name] = Model(folder.name, latest / "model.onnx")
            serve(sock, models, args.thread, args.tasks)
            os._exit(0)
        children.append(pid)

    def stop(signum: int, frame: Any) -> None:
        for pid in children:
            os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
