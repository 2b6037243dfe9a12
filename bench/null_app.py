"""modelserve's own serving stack plus a route that does no work: the HTTP ceiling of the same stack
(uvicorn + uvloop + httptools, the request middleware, the fast path, reading the body).

    MODELSERVE_MODELS_DIR=models python -m bench.null_app --port 8091
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.requests import Request
from starlette.responses import Response

from service import logs
from service.app import create_app, serving_stack
from service.config import Settings
from service.transports.http.body import read_body


async def null(request: Request) -> Response:
    await read_body(request, 1 << 20)
    return Response(b"{}", media_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args()
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)  # as the server does: the same access log
    app = serving_stack(create_app(settings), extra_routes={"/bench/null": null})
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
