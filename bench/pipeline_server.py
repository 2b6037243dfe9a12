"""The usual way to serve a transformer text classifier: FastAPI + a `transformers` pipeline, as the
tutorials write it (one request at a time through ``pipeline("text-classification")``, torch underneath,
uvicorn's own ``--workers``). The baseline of bench/text_pipeline.py.

    python -m bench.pipeline_server --port 8091 --workers 2

The pipeline loads the same encoder as the shipped ``sentiment`` (all-MiniLM-L6-v2 from its pinned
package, offline) with the usual sequence-classification head: the same network and the same work per
text, so its speed is comparable; its head is not the fine-tuned one, so its answers are not.
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class TextsRequest(BaseModel):
    texts: list[str]


def build() -> FastAPI:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import pipeline

    from training.kinds.subword.recipe import encoder_folder

    folder = str(encoder_folder("all-minilm-l6-v2"))
    classifier = pipeline(
        "text-classification", model=folder, tokenizer=folder, truncation=True, max_length=128
    )
    app = FastAPI()

    @app.post("/predict")
    def predict(request: TextsRequest) -> dict[str, object]:
        return {"predictions": classifier(request.texts)}

    @app.get("/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    common = dict(host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    if args.workers > 1:  # what a tutorial does to use more cores: uvicorn's own supervisor
        uvicorn.run("bench.pipeline_server:build", factory=True, workers=args.workers, **common)  # type: ignore[arg-type]
    else:
        uvicorn.run(build(), **common)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
