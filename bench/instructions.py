"""Machine instructions per request on HTTP's direct path, counted by valgrind: the measure of the serving
stack's own work that does not move with the machine.

    python -m bench.instructions [--before CHECKOUT ...] [--env K=V,...] [--workload lstm|cnn] [--requests 640]

Why: CPU time per request (bench.cpu) moves by ±8% a round on a shared 2-core machine, so a change worth 1-3%
of a request takes many rounds to show, if it shows at all. Instructions counted by callgrind do not move
with the machine's speed: two runs of one tree agree within ~0.3% (~1% now and then, when a batch forms
differently), so a change of 1% shows in one pair of runs.

What is counted: everything the server process executes while ``--requests`` V2 JSON requests are
answered, on every thread, with two things left out on purpose:
- the network: the real HTTP protocol (limits.py), app, data plane, batcher, access log, metrics and
  statistics take the requests, but through in-process transports that hand the bytes over and take the
  answer (no sockets, so no system calls: bench.cpu measures those);
- the graph: onnxruntime's run is replaced by a stand-in that answers zeros of the graph's output shapes
  after sleeping 3 ms (a batch's run, without its instructions). The graph costs what it costs in any
  server (docs/performance.md), and its instructions would swamp the rest.
64 connections send in waves (each sends its next request once all 64 are answered), so every run forms
the same batches. Counting starts after the server has settled (3 s) and stops at the last answer, through
callgrind's client requests (a small C helper compiled here: gcc and valgrind, ``apt-get install valgrind
gcc``). Each run is its own valgrind, about a minute, one per CPU at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # (not bench.harness: the measured process imports only
# the measured checkout, whose bench/ may predate this module)
CONNECTIONS = 64
_HELPER = r"""
#include <valgrind/callgrind.h>
void zero(void) { CALLGRIND_ZERO_STATS; }
void dump(void) { CALLGRIND_DUMP_STATS; }
"""


# --------------------------------------------------------------------------------- inside valgrind
class _Transport(asyncio.Transport):
    """What the protocol writes to: an answer goes back to its connection at once."""

    def __init__(self, connection: _Connection) -> None:
        super().__init__()
        self.connection = connection
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not bytes(data[:12]).startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"bench.instructions: not a 200: {bytes(data[:300])!r}")
        self.connection.answered()

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Connection:
    def __init__(self, run: _Waves, protocol: Any, first: int) -> None:
        self.run, self.protocol, self.next = run, protocol, first

    def send(self) -> None:
        self.protocol.data_received(self.run.requests[self.next % len(self.run.requests)])
        self.next += 1

    def answered(self) -> None:
        self.run.answered()


class _Waves:
    """``total`` requests in waves of one per connection, each wave sent in one loop step."""

    def __init__(self, requests: list[bytes], total: int) -> None:
        self.requests, self.total = requests, total
        self.connections: list[_Connection] = []
        self.done = 0
        self.in_wave = 0
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def send_all(self) -> None:
        for connection in self.connections:
            connection.send()

    def answered(self) -> None:
        self.done += 1
        self.in_wave += 1
        if self.in_wave == len(self.connections):
            self.in_wave = 0
            if self.done >= self.total:
                self.finished.set_result(None)
            else:
                asyncio.get_running_loop().call_soon(self.send_all)


def _stand_in(outputs: list[tuple[str, Any, tuple[int, ...]]]) -> Any:
    import numpy as np

    def run(self: Any, feeds: dict[str, Any]) -> dict[str, Any]:
        rows = len(next(iter(feeds.values())))
        time.sleep(0.003)
        return {name: np.zeros((rows, *dims), dtype) for name, dtype, dims in outputs}

    return run


async def _serve(requests: list[bytes], total: int, helper: str) -> None:
    import ctypes

    import uvicorn
    from uvicorn.server import ServerState

    from service import logs
    from service.app import create_app
    from service.config import Settings
    from service.process.serving import uvicorn_options

    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    app = create_app(settings)
    options = uvicorn_options(settings, app)
    options.pop("host")
    options.pop("port")
    config = uvicorn.Config(app, **options)
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    counter = ctypes.CDLL(helper)
    async with app.router.lifespan_context(app):
        await asyncio.sleep(3)  # loading and warm-up work still running in the background ends first
        run = _Waves(requests, total)
        for i in range(CONNECTIONS):
            protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=state, app_state={}, _loop=loop
            )
            connection = _Connection(run, protocol, i)
            protocol.connection_made(_Transport(connection))
            run.connections.append(connection)
        counter.zero()
        run.send_all()
        await run.finished
        counter.dump()
        for connection in run.connections:
            connection.protocol.connection_lost(None)


def _inside(folder: Path, total: int, helper: str) -> None:
    """The measured process (under valgrind): the bench repository's one model, a stand-in graph run."""
    import json

    import numpy as np
    import uvloop

    from service import runtime

    spec = json.loads((folder / "model.json").read_text())
    outputs = [(name, np.dtype(dtype), tuple(dims)) for name, dtype, dims in spec["outputs"]]
    runtime.OnnxModel.run = _stand_in(outputs)  # type: ignore[method-assign]
    requests = [(folder / f"request{i}.http").read_bytes() for i in range(10)]
    uvloop.run(_serve(requests, total, helper))


# --------------------------------------------------------------------------------- the driver
def _prepare(workload: str, tmp: Path) -> Path:
    """The repository (one model), its requests as raw HTTP, and its outputs for the stand-in."""
    import json

    import onnxruntime as ort

    from bench.triton import bodies, build_repository

    repo = tmp / "repository"
    models = build_repository(repo)
    for other in models:
        if other != workload:
            shutil.rmtree(repo / other)
    session = ort.InferenceSession(
        str(repo / workload / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    types = {"tensor(float)": "float32", "tensor(int64)": "int64"}
    outputs = [(o.name, types[o.type], [int(d) for d in o.shape[1:]]) for o in session.get_outputs()]
    (tmp / "model.json").write_text(json.dumps({"outputs": outputs}))
    for i, (url, headers, body) in enumerate(bodies(models, workload)):
        head = f"POST {url} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        (tmp / f"request{i}.http").write_bytes(head.encode() + body)
    return repo


def _helper(tmp: Path) -> str:
    source, library = tmp / "counter.c", tmp / "counter.so"
    source.write_text(_HELPER)
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return str(library)


def count(root: Path, tmp: Path, repo: Path, helper: str, total: int, env: dict[str, str]) -> int:
    """Instructions per request of the checkout at ``root`` (one valgrind run)."""
    out = tmp / f"callgrind.{os.getpid()}.{time.monotonic_ns()}"
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            str(Path(__file__).resolve()),
            "--inside",
            str(tmp),
            "--requests",
            str(total),
            "--helper",
            helper,
        ],
        cwd=root,
        env={
            **os.environ,
            "PYTHONPATH": str(root),
            "PYTHONHASHSEED": "0",
            "MODELSERVE_MODELS_DIR": str(repo),
            "MODELSERVE_WORKERS": "1",
            "MODELSERVE_GRPC_PORT": "0",  # no gRPC listener: runs side by side would share its port
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"bench.instructions: the run of {root} failed:\n{done.stderr.decode()[-3000:]}")
    dumped = Path(f"{out}.1")
    totals = [line for line in dumped.read_text().splitlines() if line.startswith("totals:")]
    for path in tmp.glob(f"{out.name}*"):
        path.unlink()
    return round(int(totals[0].split()[1]) / total)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", action="append", default=[], type=Path, help="another checkout")
    parser.add_argument("--env", action="append", default=[], help="K=V,... against the default")
    parser.add_argument("--workload", default="lstm", choices=["lstm", "cnn"])
    parser.add_argument("--requests", type=int, default=640, help="a multiple of 64")
    parser.add_argument("--runs", type=int, default=2, help="runs per variant (the least is reported)")
    parser.add_argument("--inside", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--helper", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside is not None:
        _inside(args.inside, args.requests, args.helper)
        return
    for tool in ("valgrind", "gcc"):
        if subprocess.run(["which", tool], capture_output=True).returncode:
            raise SystemExit(f"bench.instructions needs {tool}: apt-get install valgrind gcc")
    variants: list[tuple[str, Path, dict[str, str]]] = [("this checkout", ROOT, {})]
    variants += [(f"before: {p}", p.resolve(), {}) for p in args.before]
    variants += [(f"env {e}", ROOT, dict(kv.split("=", 1) for kv in e.split(","))) for e in args.env]
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as name:
        tmp = Path(name)
        repo = _prepare(args.workload, tmp)
        helper = _helper(tmp)
        print(f"| variant | instructions a request ({args.workload}, least of {args.runs}) | runs | ratio |")
        print("|---|---|---|---|")
        first = None
        # Counts do not depend on the machine's load: the runs go side by side, one per CPU.
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            jobs = [
                [pool.submit(count, root, tmp, repo, helper, args.requests, env) for _ in range(args.runs)]
                for _, root, env in variants
            ]
        for (label, _, _), futures in zip(variants, jobs, strict=True):
            runs = [f.result() for f in futures]
            least = min(runs)
            first = first or least
            print(
                f"| {label} | {least:,} | {', '.join(f'{r:,}' for r in runs)} | {least / first:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
