"""Speech over HTTP against a real server with the shipped `commands` model: /predict in each envelope,
V2 with BYTES and feature tensors, the recordings a browser makes, and every bad input a clear 4xx."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import subprocess
import sys
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.client import AsyncModelServeClient, ModelServeClient
from service.kinds.audio.preprocess import AudioSpec, decode_wav, features, resample
from service.protocol.tensors import pack_bytes
from tests.conftest import EXAMPLES, Server

CLIPS = sorted((EXAMPLES / "commands").glob("*.wav"))


def expected(path: Path) -> str:
    return path.stem.split("-")[0]  # examples/commands/<word>-<voice>.wav


def pcm16(x: np.ndarray, rate: int) -> bytes:
    """A 16-bit mono WAV, as the playground records one (16 or 48 kHz)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(np.round(x * 32767), -32768, 32767).astype("<i2").tobytes())
    return buf.getvalue()


def test_examples_are_recognised_in_every_envelope(client: httpx.Client) -> None:
    assert len(CLIPS) >= 4
    for clip in CLIPS:
        data = clip.read_bytes()
        multipart = client.post("/predict?model=commands", files={"file": (clip.name, data, "audio/wav")})
        raw = client.post("/models/commands/predict", content=data, headers={"Content-Type": "audio/x-wav"})
        as_json = client.post("/predict", json={"audio": base64.b64encode(data).decode()})
        for r in (multipart, raw, as_json):
            assert r.status_code == 200, r.text
            top = r.json()["predictions"][0]
            assert (r.json()["model"], top["label"]) == ("commands", expected(clip)), clip.name


def test_many_clips_answer_in_order_with_top_k(client: httpx.Client) -> None:
    audios = [base64.b64encode(c.read_bytes()).decode() for c in CLIPS]
    r = client.post("/predict?model=commands&top_k=3", json={"audios": audios})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert [p["label"] for p in predictions] == [expected(c) for c in CLIPS]
    assert all(len(p["top_k"]) == 3 and p["top_k"][0]["score"] >= p["top_k"][1]["score"] for p in predictions)


@pytest.mark.parametrize("rate", [16000, 48000])
def test_a_browser_recording_is_recognised(client: httpx.Client, rate: int) -> None:
    """The playground records 16-bit mono at 16 or 48 kHz, about 1.5 s, the word somewhere inside."""
    x, source_rate = decode_wav(CLIPS[0].read_bytes())
    x = resample(x, source_rate, rate)
    recording = np.zeros(int(1.5 * rate), dtype=np.float32)
    recording[int(0.4 * rate) : int(0.4 * rate) + len(x)] = x[: len(recording) - int(0.4 * rate)]
    recording += np.random.default_rng(0).normal(0, 0.002, len(recording)).astype(np.float32)  # room noise
    r = client.post(
        "/predict?model=commands", files={"file": ("rec.wav", pcm16(recording, rate), "audio/wav")}
    )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["label"] == expected(CLIPS[0])


def test_v2_takes_encoded_wav_bytes_and_feature_tensors(client: httpx.Client) -> None:
    clip = CLIPS[1]
    data = clip.read_bytes()
    as_json = {
        "inputs": [
            {"name": "audio", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(data).decode()]}
        ]
    }
    r = client.post("/v2/models/commands/infer", json=as_json)
    assert r.status_code == 200, r.text
    by_json = np.asarray(r.json()["outputs"][1]["data"])
    framed = pack_bytes([data])
    header = {
        "inputs": [
            {
                "name": "audio",
                "datatype": "BYTES",
                "shape": [1],
                "parameters": {"binary_data_size": len(framed)},
            }
        ]
    }
    head = httpx.Request("POST", "/", json=header).content
    r = client.post(
        "/v2/models/commands/infer",
        content=head + framed,
        headers={
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    by_binary = np.asarray(r.json()["outputs"][1]["data"])
    feats = features(data, AudioSpec())
    tensor = {
        "inputs": [
            {
                "name": "features",
                "datatype": "FP32",
                "shape": [1, *feats.shape],
                "data": feats.ravel().tolist(),
            }
        ]
    }
    r = client.post("/v2/models/commands/infer", json=tensor)
    assert r.status_code == 200, r.text
    by_tensor = np.asarray(r.json()["outputs"][1]["data"])
    assert np.abs(by_json - by_binary).max() < 1e-6 and np.abs(by_json - by_tensor).max() < 1e-5
    labels = client.get("/v2/models/commands").json()["parameters"]["labels"]
    assert labels[int(by_json.argmax())] == expected(clip)


def _float_wav_with_nan() -> bytes:
    x = np.zeros(16000, dtype="<f4")
    x[5] = np.nan
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)
    body = b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", x.nbytes) + x.tobytes()
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


BAD = {
    "not audio": (b"this is plainly not audio", 415, "not a WAV"),
    "a PNG called audio": ((EXAMPLES / "digits" / "3.png").read_bytes(), 415, "not a WAV"),
    "corrupt WAV": (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", 400, "corrupt"),
    "0 bytes": (b"", 400, "empty"),
    "no samples": (pcm16(np.zeros(0, dtype=np.float32), 16000), 422, "0.000 s"),
    "too short": (pcm16(np.zeros(800, dtype=np.float32), 16000), 422, "0.2-2 s"),
    "10 minutes": (pcm16(np.zeros(8000 * 600, dtype=np.float32), 8000), 422, "600.000 s"),
    "NaN floats": (_float_wav_with_nan(), 422, "NaN"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_audio_is_a_clear_4xx_and_the_server_goes_on(client: httpx.Client, case: str) -> None:
    data, status, message = BAD[case]
    r = client.post("/predict?model=commands", content=data, headers={"Content-Type": "audio/wav"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    v2 = {
        "inputs": [
            {"name": "audio", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(data).decode()]}
        ]
    }
    r = client.post("/v2/models/commands/infer", json=v2)
    assert r.status_code == status, r.text
    ok = client.post(
        "/predict?model=commands", content=CLIPS[0].read_bytes(), headers={"Content-Type": "audio/wav"}
    )
    assert ok.status_code == 200


def test_one_bad_clip_among_many_is_named(client: httpx.Client) -> None:
    audios = [base64.b64encode(c).decode() for c in (CLIPS[0].read_bytes(), b"nope, not a wav")]
    r = client.post("/predict?model=commands", json={"audios": audios})
    assert r.status_code == 415 and "audio clip 1" in r.json()["error"]


def test_audio_sent_to_an_image_model_is_refused(client: httpx.Client) -> None:
    r = client.post(
        "/predict?model=digits", content=CLIPS[0].read_bytes(), headers={"Content-Type": "audio/wav"}
    )
    assert r.status_code == 415, r.text


def test_client_and_cli_take_wav_files(server: Server) -> None:
    with ModelServeClient(server.url) as ms:
        assert ms.predict_audio("commands", CLIPS[0]).label == expected(CLIPS[0])
        got = ms.predict_audios("commands", [c.read_bytes() for c in CLIPS], top_k=2)
        assert [p.label for p in got] == [expected(c) for c in CLIPS]

    async def async_call() -> str:
        async with AsyncModelServeClient(server.url) as ams:
            return (await ams.predict_audio("commands", CLIPS[1])).label

    assert asyncio.run(async_call()) == expected(CLIPS[1])
    cli = subprocess.run(
        [sys.executable, "-m", "service", "predict", "--model", "commands", "--url", server.url, "--json"]
        + [str(c) for c in CLIPS],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert [row["label"] for row in json.loads(cli.stdout)] == [expected(c) for c in CLIPS]


def test_v2_takes_a_waveform_tensor(client: httpx.Client) -> None:
    clip = CLIPS[2]
    x, rate = decode_wav(clip.read_bytes())
    x = resample(x, rate, 16000)

    def infer(samples: np.ndarray) -> httpx.Response:
        body = {
            "inputs": [
                {"name": "waveform", "datatype": "FP32", "shape": [1, len(samples)], "data": samples.tolist()}
            ]
        }
        return client.post("/v2/models/commands/infer", json=body)

    r = infer(x)
    assert r.status_code == 200, r.text
    wav_answer = client.post(
        "/predict?model=commands&top_k=22", content=clip.read_bytes(), headers={"Content-Type": "audio/wav"}
    )
    scores = {p["index"]: p["score"] for p in wav_answer.json()["predictions"][0]["top_k"]}
    by_waveform = r.json()["outputs"][1]["data"]
    assert max(abs(by_waveform[i] - s) for i, s in scores.items()) < 1e-5  # the same clip rule and features
    too_long = infer(np.zeros(16000 * 3, dtype=np.float32))
    assert too_long.status_code == 422 and "0.2-2 s" in too_long.json()["error"]
    r = client.post(
        "/v2/models/commands/infer",
        json={"inputs": [{"name": "samples", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}]},
    )
    assert r.status_code == 422 and "features" in r.json()["error"]  # unknown input names the graph's


def test_explain_shows_the_features_the_model_heard(client: httpx.Client) -> None:
    r = client.post(
        "/predict?model=commands&explain=1",
        content=CLIPS[0].read_bytes(),
        headers={"Content-Type": "audio/wav"},
    )
    assert r.status_code == 200, r.text
    seen = r.json()["predictions"][0]["input"]
    assert seen["shape"] == [98, 40] and seen["spectrogram"].startswith("data:image/png;base64,")
