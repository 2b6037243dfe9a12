"""The naive baseline: what most tutorials ship. FastAPI + onnxruntime, pydantic-parsed JSON, one
``session.run`` per request in FastAPI's threadpool, no batching. Same models, same preprocessing code.

    python -m bench.naive_server --port 8090 --models models [--workers N]   # uvicorn --workers N
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image
from pydantic import BaseModel

from service.kinds.image.preprocess import ImageSpec, to_array
from service.kinds.text.preprocess import Tokenizer, pad_batch


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferRequest(BaseModel):
    inputs: list[Tensor]


class TextsRequest(BaseModel):
    texts: list[str]


DTYPES = {"tensor(uint8)": np.uint8, "tensor(int64)": np.int64, "tensor(float)": np.float32}


def build(models: Path) -> FastAPI:
    app = FastAPI()
    sessions, metas = {}, {}
    for folder in sorted(models.iterdir()):
        if (folder / "1" / "model.onnx").exists():  # V2 infer serves every graph (bench/triton.py's too)
            sessions[folder.name] = ort.InferenceSession(str(folder / "1" / "model.onnx"))

    @app.post("/v2/models/{name}/infer")
    def infer(name: str, request: InferRequest) -> dict[str, object]:
        sess = sessions[name]
        meta = sess.get_inputs()[0]
        tensor = request.inputs[0]
        x = np.array(tensor.data, dtype=DTYPES[meta.type]).reshape(tensor.shape)
        outputs = sess.run(None, {meta.name: x})
        return {
            "model_name": name,
            "outputs": [
                {"name": o.name, "datatype": "FP32", "shape": list(v.shape), "data": v.ravel().tolist()}
                for o, v in zip(sess.get_outputs(), outputs, strict=True)
            ],
        }

    for name in ("digits", "sentiment-lstm"):
        if not (models / name / "1" / "model.json").exists():
            continue
        metas[name] = json.loads((models / name / "1" / "model.json").read_text())
    if len(metas) < 2:  # a bench repository of tensor graphs: V2 infer only
        return app
    pre = metas["sentiment-lstm"]["preprocessing"]["text"]
    tokenizer = Tokenizer.from_preprocessing(pre, model_dir=models / "sentiment-lstm" / "1")
    img = metas["digits"]["preprocessing"]["image"]
    spec = ImageSpec.from_preprocessing(img)

    def answer(name: str, probs: np.ndarray) -> dict[str, object]:
        labels = metas[name]["labels"]
        return {
            "model": name,
            "predictions": [
                {"label": labels[int(p.argmax())], "index": int(p.argmax()), "score": float(p.max())}
                for p in probs
            ],
        }

    @app.post("/predict/image")
    def predict_image(file: UploadFile = File(...)) -> dict[str, object]:  # noqa: B008
        pixels = to_array(Image.open(io.BytesIO(file.file.read())), spec)[None]
        return answer("digits", sessions["digits"].run(["probabilities"], {"pixels": pixels})[0])

    @app.post("/predict/text")
    def predict_text(request: TextsRequest) -> dict[str, object]:
        ids = pad_batch([tokenizer.encode(t) for t in request.texts], tokenizer.pad_id)
        return answer("sentiment-lstm", sessions["sentiment-lstm"].run(["probabilities"], {"ids": ids})[0])

    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory for --workers (each worker builds its own sessions)."""
    return build(Path(os.environ["NAIVE_MODELS"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    common = dict(host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    if args.workers > 1:  # what a tutorial does to use more cores: uvicorn's own supervisor
        os.environ["NAIVE_MODELS"] = str(args.models.resolve())
        uvicorn.run("bench.naive_server:app_from_env", factory=True, workers=args.workers, **common)  # type: ignore[arg-type]
    else:
        uvicorn.run(build(args.models), **common)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
