"""gRPC's floor here: an empty unary ModelInfer handler (the request parsed, a fixed answer) on grpc.aio
with uvloop, on grpc's thread-pool server, or on modelserve's own HTTP/2 server (``native``, what
modelserve runs by default), beside modelserve's own gRPC, under the same load.

    python -m bench.grpc_floor [--seconds 5] [--concurrency 1,16,64]

Load: N grpc.aio stubs in one Python process (closed loop, one channel), the bench's cnn request (FP32
[1, 1, 28, 28] as raw_input_contents). Per point: requests/s, p50, and the server's CPU per request
(process tree). Whatever modelserve spends beyond the floor is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import Server
from bench.protocols import closed_loop
from bench.triton import build_repository

SERVICE = "inference.GRPCInferenceService"


LEAN_OPTIONS = [("grpc.enable_channelz", 0), ("grpc.optimization_target", "throughput")]
"""Server options that skip per-call bookkeeping (channelz) and ask grpc-core to favour throughput."""


def _fixed_answer() -> Any:
    """What every floor server answers to ModelInfer: the bench cnn's output shape, zeros."""
    from service.protocol.oip import grpc_service_pb2 as pb

    answer = pb.ModelInferResponse(model_name="cnn", model_version="1")
    answer.outputs.add(name="probabilities", datatype="FP32", shape=[1, 10])
    answer.raw_output_contents.append(np.zeros(10, np.float32).tobytes())
    return answer


def _methods(asynchronous: bool) -> dict[str, tuple[Any, Any, Any]]:
    """The floor's methods: name -> (handler, request parser, answer serializer); the handlers are
    coroutines for the asyncio servers, plain functions for the thread pool."""
    from service.protocol.oip import grpc_service_pb2 as pb

    answer = _fixed_answer()

    def infer(request: Any, context: Any) -> Any:
        return answer

    def ready(request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=True)

    async def infer_async(request: Any, context: Any) -> Any:
        return answer

    async def ready_async(request: Any, context: Any) -> Any:
        return ready(request, context)

    return {
        "ModelInfer": (
            infer_async if asynchronous else infer,
            pb.ModelInferRequest.FromString,
            pb.ModelInferResponse.SerializeToString,
        ),
        "ServerReady": (
            ready_async if asynchronous else ready,
            pb.ServerReadyRequest.FromString,
            pb.ServerReadyResponse.SerializeToString,
        ),
    }


def _grpc_handlers(asynchronous: bool) -> dict[str, Any]:
    import grpc

    return {name: grpc.unary_unary_rpc_method_handler(*m) for name, m in _methods(asynchronous).items()}


def serve_sync(port: int) -> None:
    """The same empty handler on grpc's thread-pool server (no asyncio)."""
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, _grpc_handlers(False)),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def serve_native(port: int) -> None:
    """The same empty handler on modelserve's own HTTP/2 server (service/transports/grpc/http2.py)."""
    import uvloop

    from service.transports.grpc.calls import Method
    from service.transports.grpc.http2 import Http2Server

    async def main() -> None:
        methods = {
            f"/{SERVICE}/{name}": Method(False, parse, serialize, handler)
            for name, (handler, parse, serialize) in _methods(True).items()
        }
        server = Http2Server(methods, max_message=32 << 20)
        await server.start("127.0.0.1", port, reuse_port=False)
        await asyncio.Event().wait()

    uvloop.run(main())


def serve(port: int, options: list[tuple[str, Any]] | None = None) -> None:
    """The empty handler on grpc.aio: ModelInfer answers a fixed ModelInferResponse; health for readiness."""
    import grpc
    import uvloop

    async def main() -> None:
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, _grpc_handlers(True)),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main())


class FloorServer(Server):
    def __init__(self, mode: str = "aio") -> None:
        super().__init__(
            f"grpc-floor-{mode}",
            [sys.executable, "-m", "bench.grpc_floor", "--serve", "{port}", "--mode", mode],
        )
        self.grpc_port = self.port

    def _wait_ready(self) -> float:
        import grpc

        from service.protocol.oip import grpc_service_pb2 as pb

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
                    ready = channel.unary_unary(
                        f"/{SERVICE}/ServerReady",
                        request_serializer=pb.ServerReadyRequest.SerializeToString,
                        response_deserializer=pb.ServerReadyResponse.FromString,
                    )
                    if ready(pb.ServerReadyRequest(), timeout=1).ready:
                        return time.perf_counter() - self.started
            except grpc.RpcError:
                time.sleep(0.1)
        raise RuntimeError("the floor server did not start")


def load(target: str, concurrency: int, seconds: float) -> dict[str, Any]:
    import grpc

    from service.protocol.oip import grpc_service_pb2 as pb

    request = pb.ModelInferRequest(model_name="cnn")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 28, 28])
    request.raw_input_contents.append(np.zeros(784, np.float32).tobytes())

    async def main() -> dict[str, Any]:
        async with grpc.aio.insecure_channel(target) as channel:
            infer = channel.unary_unary(
                f"/{SERVICE}/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
            await closed_loop(lambda: infer(request), concurrency, 1.0)  # warm-up
            return await closed_loop(lambda: infer(request), concurrency, seconds)

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="aio", help=argparse.SUPPRESS)
    parser.add_argument(
        "--floors",
        default="aio,native",
        help="floors to run: aio, aio-lean (LEAN_OPTIONS), sync (thread pool), native (modelserve's HTTP/2)",
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,16,64")
    args = parser.parse_args()
    if args.serve:
        if args.mode == "sync":
            serve_sync(args.serve)
        elif args.mode == "native":
            serve_native(args.serve)
        else:
            serve(args.serve, LEAN_OPTIONS if args.mode == "aio-lean" else None)
        return
    repo = Path(tempfile.mkdtemp(prefix="bench-grpc-floor-")) / "repository"
    build_repository(repo)
    servers = [
        *(FloorServer(mode) for mode in args.floors.split(",")),
        Server(
            "modelserve",
            [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"],
            {"MODELSERVE_MODELS_DIR": str(repo), "MODELSERVE_WORKERS": "1"},
        ),
    ]
    rows = []
    try:
        for c in (int(x) for x in args.concurrency.split(",")):
            for server in servers:
                cpu0 = server.cpu_s()
                r = load(f"127.0.0.1:{server.grpc_port}", c, args.seconds)
                cpu = server.cpu_s() - cpu0  # warm-up second included on both sides of the division
                served = r["rps"] * (args.seconds + 1.0)
                rows.append(
                    {
                        "server": server.name,
                        "concurrency": c,
                        **r,
                        "cpu_us_per_request": round(1e6 * cpu / served, 1) if served else None,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    finally:
        for server in servers:
            server.stop()
    print("\n| server (one process) | c | req/s | p50 ms | server CPU µs/request |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['server']} | {r['concurrency']} | {r['rps']:,.0f} | {r['p50_ms']} | {r['cpu_us_per_request']} |"
        )


if __name__ == "__main__":
    main()
