"""Models from an S3 bucket: a real SeaweedFS server on 127.0.0.1 (tests/s3server.py), boto3, a real modelserve.

What completes a version is in service/repository/s3.py and docs/operations.md: a marker object written last, or
(for a model that uses no markers) a listing that stays the same for one poll period.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.client import ModelServeClient
from service.repository.s3 import MARKER
from tests.conftest import EXAMPLES, MODELS, ROOT, Server, free_port, run_server
from tests.s3server import SeaweedS3, seaweedfs, upload_folder

# Distinctive names, so an answer or a log line that leaked one of them is found.
BUCKET = "modelserve-zq7-bucket"
PREFIX = "team-x9k/repo"
# A store and a server or more per test, ~100 s for the module: out of the inner loop (make test runs it).
pytestmark = pytest.mark.slow
# Every shipped model and its version (sentiment ships version 2, the others version 1).
SHIPPED_VERSIONS = {
    m.name: next(v.name for v in sorted(m.iterdir()) if (v / "model.onnx").is_file())
    for m in MODELS.iterdir()
    if any(v.is_dir() and (v / "model.onnx").is_file() for v in m.iterdir())
}
SHIPPED = sorted(SHIPPED_VERSIONS)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with seaweedfs(tmp_path_factory.mktemp("s3"), bucket=BUCKET) as server:
        yield server


def _secrets(s3: SeaweedS3) -> list[str]:
    """What no answer (and no info-level log line) may carry."""
    return [BUCKET, PREFIX, "x9k", s3.endpoint.split("//")[1], s3.access_key, s3.secret_key]


def _assert_no_secrets(s3: SeaweedS3, text: str, where: str) -> None:
    leaked = [s for s in _secrets(s3) if s in text]
    assert not leaked, f"{where} carries {leaked}: {text[:2000]}"


def _upload_version(s3: SeaweedS3, prefix: str, model: str, version: int, marker: bool = True) -> None:
    """The shipped version of ``model`` uploaded as ``version``."""
    upload_folder(
        s3.client(), BUCKET, MODELS / model / SHIPPED_VERSIONS[model], f"{prefix}/{model}/{version}"
    )
    if marker:
        s3.client().put_object(Bucket=BUCKET, Key=f"{prefix}/{model}/{version}/{MARKER}", Body=b"")


def _delete_version(s3: SeaweedS3, prefix: str, model: str, version: int) -> None:
    client = s3.client()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/{model}/{version}/")
    for item in listed.get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])


def _env(s3: SeaweedS3, tmp_path: Path, **extra: str) -> dict[str, str]:
    return s3.env(MODELSERVE_MODELS_CACHE_DIR=str(tmp_path / "cache"), MODELSERVE_LOG_LEVEL="info", **extra)


def _served(srv: Server, model: str) -> list[str]:
    r = httpx.get(f"{srv.url}/v2/models/{model}", timeout=30)
    return sorted(r.json()["versions"]) if r.status_code == 200 else []


def _wait_for(what: str, condition: Callable[[], bool], timeout_s: float = 60) -> None:
    """Bounded wait on a condition (the poller's period is 0.3 s; the bound is for a loaded machine)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def _predict_seven(srv: Server) -> httpx.Response:
    seven = (EXAMPLES / "digits" / "7.png").read_bytes()
    return httpx.post(f"{srv.url}/predict?model=digits", files={"file": ("7.png", seven)}, timeout=30)


def _cached(tmp_path: Path, model: str) -> list[str]:
    """Version folders of a model in the (only) cache folder."""
    roots = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert len(roots) == 1, roots
    folder = roots[0] / model
    return sorted(p.name for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def test_every_shipped_model_serves_from_a_bucket(s3: SeaweedS3, tmp_path: Path) -> None:
    """The shipped repository, uploaded as is (a marker per version), serves every model with two workers
    sharing one cache; the cached files are the shipped bytes; no answer or info log names the bucket."""
    prefix = f"{PREFIX}/all"
    for model in SHIPPED:
        if (MODELS / model / "config.json").is_file():
            s3.client().upload_file(
                str(MODELS / model / "config.json"), BUCKET, f"{prefix}/{model}/config.json"
            )
        _upload_version(s3, prefix, model, int(SHIPPED_VERSIONS[model]))
    env = _env(s3, tmp_path, MODELSERVE_WORKERS="2")
    with run_server(f"s3://{BUCKET}/{prefix}", tmp_path, env=env) as srv:
        answers: list[str] = []
        with ModelServeClient(srv.url, timeout=60) as ms:
            assert sorted(m.name for m in ms.models()) == SHIPPED
            assert ms.predict_image("digits", EXAMPLES / "digits" / "7.png").label == "7"
            assert ms.predict_audio("commands", EXAMPLES / "commands" / "yes-flite-rms.wav").label == "yes"
            fashion = ms.predict_image("fashion", EXAMPLES / "fashion" / "ankle-boot.png")
            assert "boot" in fashion.label.lower(), fashion
            text = ms.predict_text("sentiment", "a wonderful, moving film")
            assert text.label == "positive" and text.version == SHIPPED_VERSIONS["sentiment"]
            assert len(ms.predict_csv("churn", EXAMPLES / "churn" / "customers.csv")) > 0
            assert len(ms.predict_csv("letters", EXAMPLES / "letters" / "rows.csv")) > 0
        for path in ("/v2/health/ready", "/v2", "/v2/models/digits", "/v2/models/sentiment/config"):
            answers.append(httpx.get(f"{srv.url}{path}").text)
        answers.append(httpx.post(f"{srv.url}/v2/repository/index").text)
        answers.append(httpx.post(f"{srv.url}/v2/repository/models/nosuch/load").text)
        answers.append(httpx.get(f"{srv.url}/metrics").text)
        for answer in answers:
            _assert_no_secrets(s3, answer, "an answer")
        _assert_no_secrets(s3, srv.log(), "the info-level log")
    for model in SHIPPED:
        version = SHIPPED_VERSIONS[model]
        cached = next(p for p in (tmp_path / "cache").iterdir() if p.is_dir()) / model / version
        for shipped in (MODELS / model / version).iterdir():
            digest = hashlib.sha256((cached / shipped.name).read_bytes()).hexdigest()
            assert digest == hashlib.sha256(shipped.read_bytes()).hexdigest(), shipped


def test_versions_come_and_go_with_the_bucket_and_only_whole_ones_load(s3: SeaweedS3, tmp_path: Path) -> None:
    """Polling every 0.3 s: a version uploaded later is served; one without its marker (half uploaded)
    never loads; finishing it loads it; deleting it unloads it; a corrupt one keeps the old serving."""
    prefix = f"{PREFIX}/poll"
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/digits/config.json", Body=b'{"version_policy": "all"}')
    _upload_version(s3, prefix, "digits", 1)
    env = _env(s3, tmp_path, MODELSERVE_REPOSITORY_POLL_S="0.3")
    with run_server(f"s3://{BUCKET}/{prefix}", tmp_path, env=env) as srv:
        answers: list[str] = []
        assert _served(srv, "digits") == ["1"]

        # Version 2 half uploaded (model.json and half of model.onnx, no marker), then version 3 whole.
        onnx = (MODELS / "digits" / "1" / "model.onnx").read_bytes()
        client.upload_file(
            str(MODELS / "digits" / "1" / "model.json"), BUCKET, f"{prefix}/digits/2/model.json"
        )
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/digits/2/model.onnx", Body=onnx[: len(onnx) // 2])
        _upload_version(s3, prefix, "digits", 3)
        _wait_for("version 3 served", lambda: "3" in _served(srv, "digits"))
        # The poll that found 3 listed 2 as well: it was left alone, not fetched, not loaded, not failed.
        assert _served(srv, "digits") == ["1", "3"]
        assert _cached(tmp_path, "digits") == ["1", "3"]
        index = httpx.post(f"{srv.url}/v2/repository/index").text
        answers.append(index)
        assert '"version":"2"' not in index.replace(" ", ""), index

        # Finishing version 2 (the rest of model.onnx, then the marker) loads it.
        _upload_version(s3, prefix, "digits", 2)
        _wait_for("version 2 served", lambda: _served(srv, "digits") == ["1", "2", "3"])

        # Deleting version 2's objects unloads it and removes its cached copy.
        _delete_version(s3, prefix, "digits", 2)
        _wait_for("version 2 unloaded", lambda: _served(srv, "digits") == ["1", "3"])
        _wait_for("version 2 uncached", lambda: _cached(tmp_path, "digits") == ["1", "3"])

        # The latest only (a changed config.json is fetched too), then a corrupt version 4 with its marker:
        # it fails to load and version 3 keeps serving.
        client.put_object(
            Bucket=BUCKET, Key=f"{prefix}/digits/config.json", Body=b'{"version_policy": "latest"}'
        )
        _wait_for("latest policy", lambda: _served(srv, "digits") == ["3"])

        # Version 3 replaced in place (its marker written again, with new content): fetched and reloaded;
        # the new model.onnx is corrupt, so the previous load of version 3 keeps serving.
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/digits/3/model.onnx", Body=os.urandom(4096))
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/digits/3/{MARKER}", Body=b"replaced")

        def reload_failed(version: str) -> bool:
            rows = httpx.post(f"{srv.url}/v2/repository/index").json()
            return any(r["version"] == version and "reloading failed" in r["reason"] for r in rows)

        _wait_for("version 3 reloaded and failed", lambda: reload_failed("3"))
        r = _predict_seven(srv)
        assert r.status_code == 200 and r.json()["version"] == "3", r.text
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/digits/4/model.onnx", Body=os.urandom(4096))
        client.upload_file(
            str(MODELS / "digits" / "1" / "model.json"), BUCKET, f"{prefix}/digits/4/model.json"
        )
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/digits/4/{MARKER}", Body=b"")

        def failed_four() -> bool:
            rows = httpx.post(f"{srv.url}/v2/repository/index").json()
            return any(r["version"] == "4" and r["state"] == "UNAVAILABLE" for r in rows)

        _wait_for("version 4 failed", failed_four)
        assert _served(srv, "digits") == ["3"]
        r = _predict_seven(srv)
        assert r.status_code == 200 and r.json()["version"] == "3", r.text
        answers.append(httpx.post(f"{srv.url}/v2/repository/index").text)
        answers.append(httpx.get(f"{srv.url}/v2/health/ready").text)
        answers.append(httpx.post(f"{srv.url}/v2/repository/models/digits/load").text)
        for answer in answers:
            _assert_no_secrets(s3, answer, "an answer")
        _assert_no_secrets(s3, srv.log(), "the info-level log")

        # The whole model deleted from the bucket: unloaded.
        for version in (1, 3, 4):
            _delete_version(s3, prefix, "digits", version)
        client.delete_object(Bucket=BUCKET, Key=f"{prefix}/digits/config.json")
        _wait_for("digits unloaded", lambda: httpx.get(f"{srv.url}/v2/models/digits").status_code == 404)


def test_objects_that_cannot_become_a_model_are_skipped_and_the_rest_still_syncs(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    """A folder name too long for a file name, a key that is both a file and a folder ('model.onnx' and
    'model.onnx/extra'), and a marker with no files beside it: each raised a local OSError out of the
    sync, so the server would not start (rc 3), and once running no poll synced anything after them.
    Now each is skipped with a warning, and the rest serves and keeps syncing. A version folder '01' (which
    was taken as version 1 beside '1') is not a version: skipped with a warning, never fetched."""
    prefix = f"{PREFIX}/odd"
    client = s3.client()
    _upload_version(s3, prefix, "digits", 1)
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/{'a' * 300}/1/model.onnx", Body=b"x")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/letters/1/model.onnx", Body=b"x")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/letters/1/model.onnx/extra", Body=b"x")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/letters/1/{MARKER}", Body=b"")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/digits/5/{MARKER}", Body=b"")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/digits/01/model.onnx", Body=b"x")  # not version 1
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/digits/01/{MARKER}", Body=b"")
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/digits/\u0663/model.onnx", Body=b"x")  # Arabic-Indic 3
    env = _env(s3, tmp_path, MODELSERVE_REPOSITORY_POLL_S="0.3")
    with run_server(f"s3://{BUCKET}/{prefix}", tmp_path, env=env) as srv:
        assert _served(srv, "digits") == ["1"]
        assert _predict_seven(srv).status_code == 200
        _upload_version(s3, prefix, "fashion", 1)  # a later model is still picked up
        _wait_for("fashion served", lambda: _served(srv, "fashion") == ["1"])
        assert _served(srv, "digits") == ["1"] and _cached(tmp_path, "letters") == []
        log = srv.log_path.read_text()
        assert "Traceback" not in log, log[-3000:]
        assert log.count("model letters version 1 not fetched") == 1, log  # once, not every poll
        assert "no model name" in log and "'digits/01'" in log and "'digits/\u0663'" in log
        assert _cached(tmp_path, "digits") == ["1"]


def test_a_load_answers_503_at_once_when_the_store_stops_answering(s3: SeaweedS3, tmp_path: Path) -> None:
    """The store frozen (SIGSTOP: connections open, no byte answered) while the poller syncs: a repository
    load waited for the poll's lock through boto3's timeouts and retries, then ran its own (no answer in
    150 s in the fuzzing pass). Now it waits a few seconds for a sync already running, then answers 503
    with Retry-After; inference goes on; and once the store answers again, a load succeeds."""
    prefix = f"{PREFIX}/frozen"
    _upload_version(s3, prefix, "digits", 1)
    env = _env(s3, tmp_path, MODELSERVE_REPOSITORY_POLL_S="0.3")
    with run_server(f"s3://{BUCKET}/{prefix}", tmp_path, env=env) as srv:
        os.kill(s3.pid, signal.SIGSTOP)
        try:
            time.sleep(1.5)  # a poll is now inside its sync, waiting on the store
            started = time.monotonic()
            r = httpx.post(f"{srv.url}/v2/repository/models/digits/load", timeout=120)
            took = time.monotonic() - started
            assert r.status_code == 503 and r.headers["retry-after"], r.text
            assert "still running" in r.json()["error"] and took < 20, (took, r.text)
            assert _predict_seven(srv).status_code == 200
        finally:
            os.kill(s3.pid, signal.SIGCONT)
        _wait_for(
            "a load once the store answers",
            lambda: httpx.post(f"{srv.url}/v2/repository/models/digits/load", timeout=120).status_code == 200,
            timeout_s=90,
        )


def test_a_model_without_markers_loads_a_version_once_its_listing_holds_still(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    """No marker anywhere: startup takes a second listing; a version without model.onnx never loads; a
    later version loads after a stable listing."""
    prefix = f"{PREFIX}/nomarker"
    client = s3.client()
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/digits/config.json", Body=b'{"version_policy": "all"}')
    _upload_version(s3, prefix, "digits", 1, marker=False)
    env = _env(s3, tmp_path, MODELSERVE_REPOSITORY_POLL_S="0.3")
    with run_server(f"s3://{BUCKET}/{prefix}", tmp_path, env=env) as srv:
        assert _served(srv, "digits") == ["1"]
        client.upload_file(
            str(MODELS / "digits" / "1" / "model.json"), BUCKET, f"{prefix}/digits/2/model.json"
        )
        _upload_version(s3, prefix, "digits", 3, marker=False)
        _wait_for("version 3 served", lambda: "3" in _served(srv, "digits"))
        assert _served(srv, "digits") == ["1", "3"]
        assert _cached(tmp_path, "digits") == ["1", "3"]


def _serve_and_fail(models: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`modelserve serve` that must exit on its own (bounded: the test fails rather than hangs)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--models",
            models,
            "--grpc-port",
            "0",
        ],
        env={**os.environ, **env, "MODELSERVE_MODELS_CACHE_DIR": str(tmp_path / "cache")},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


REFUSING, CLOSING = "refusing", "closing"  # endpoints made by the test itself, on ports it holds


@contextmanager
def _endpoint(kind: str) -> Iterator[str]:
    """A loopback endpoint that refuses connections (a port bound, never listened on) or accepts and
    closes each at once, held for the test: a port picked at collection time may serve another test's
    server by the time it is used (seen under load: the answer was then a closed connection)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    stop = threading.Event()
    closer = None
    if kind == CLOSING:
        sock.listen(16)
        sock.settimeout(0.2)

        def close_each() -> None:
            while not stop.is_set():  # bounded: the test sets stop when it ends
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                conn.close()

        closer = threading.Thread(target=close_each, daemon=True)
        closer.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        if closer is not None:
            closer.join(timeout=5)
        sock.close()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "access denied (SignatureDoesNotMatch)"),
        ({"AWS_ACCESS_KEY_ID": "nobody"}, "access denied (InvalidAccessKeyId)"),
        ({"AWS_ENDPOINT_URL": REFUSING}, "the storage endpoint cannot be reached"),
        ({"AWS_ENDPOINT_URL": CLOSING}, "the storage endpoint closed the connection without answering"),
        ({}, "the bucket does not exist"),
    ],
    ids=["wrong-secret", "unknown-key", "no-endpoint", "endpoint-closes", "no-bucket"],
)
def test_storage_that_cannot_be_read_stops_the_server_at_once_in_words(
    s3: SeaweedS3, tmp_path: Path, change: dict[str, Any], words: str
) -> None:
    bucket = BUCKET if change else "no-such-bucket-q1"
    endpoint = change.get("AWS_ENDPOINT_URL")
    with _endpoint(endpoint) if endpoint in (REFUSING, CLOSING) else nullcontext(endpoint) as url:
        if url is not None:
            change = {**change, "AWS_ENDPOINT_URL": url}
        done = _serve_and_fail(f"s3://{bucket}/{PREFIX}", s3.env(**change), tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"cannot start: model storage error: {words}" in done.stderr, done.stderr[-3000:]
    for secret in [bucket, PREFIX, s3.secret_key, "not-the-secret"]:
        assert secret not in done.stderr, done.stderr[-3000:]
