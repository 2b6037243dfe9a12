"""modelserve's own app plus a route that does no work: the HTTP ceiling of the same server stack
(uvicorn + uvloop + httptools, the request middleware, FastAPI routing, reading the body).

    MODELSERVE_MODELS_DIR=models python -m bench.null_app --port 8091
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response

from service.app import create_app
from service.config import Settings


def build() -> FastAPI:
    app = create_app(Settings())

    @app.post("/bench/null")
    async def null(request: Request) -> Response:
        await request.body()
        return Response(b"{}", media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args()
    uvicorn.run(
        build(),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
