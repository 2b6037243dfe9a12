"""The cluster test's checks, run by tests/cluster/run.sh once the two nodes, the images and the stack are up.

A fixed load (16 connections from this host through HAProxy: V2 infer and /predict over HTTP, ModelInfer
over gRPC, all on the digits model) runs through every phase; each request is counted in the phase in which
it started. The phases, in order: answers from both nodes; a rolling update to a new image tag; a new model
version uploaded to the store; a corrupt version uploaded; a drain of node 2; a SIGKILL of one replica;
scaling 3 -> 5 -> 2; then, with the load stopped, Prometheus' sum of the replicas' request counters against
an exact number of requests sent. Every wait is bounded; the figures are printed as a table, and the last
line is "cluster: N passed, N failed[, N skipped]". Exit status 1 when a check failed.

Run by hand (after run.sh's setup): python -m tests.cluster.scenario (the settings come from the environment
run.sh exports).
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import importlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc


def _oip_stubs() -> Any:
    """The OIP gRPC stubs, wherever this checkout keeps them (they move in issue 23's house move)."""
    for name in ("service.protocol.oip", "service.transports.oip", "service.transports.grpc"):
        with contextlib.suppress(ImportError):
            return importlib.import_module(f"{name}.grpc_service_pb2")
    raise ImportError("no grpc_service_pb2 under service/")


pb = _oip_stubs()

ROOT = Path(__file__).resolve().parents[2]
ENV = os.environ
DOCKER = ENV.get("DOCKER_CLI", "/usr/bin/docker")
DOCKER1 = ENV["DOCKER1"]
DOCKER2 = ENV["DOCKER2"]
STACK = ENV.get("STACK", "mscl")
SERVICE = f"{STACK}_modelserve"
HTTP_PORT = int(ENV.get("HTTP_PORT", "18080"))
GRPC_PORT = int(ENV.get("GRPC_PORT", "18081"))
STATS_PORT = int(ENV.get("STATS_PORT", "18404"))
PROMETHEUS_PORT = int(ENV.get("PROMETHEUS_PORT", "19090"))
S3_PORT = int(ENV.get("S3_PORT", "18333"))
NODE2_NAME = ENV["NODE2_NAME"]
POLL_S = float(ENV.get("POLL_S", "5"))
S3_MODELS = ENV.get("S3_MODELS", "") == "1"  # the replicas read s3://models/ (else the image's /models)
S3_SKIP_REASON = ENV.get("S3_SKIP_REASON", "the replicas do not read the model repository from S3")
MODEL = "digits"
CONNECTIONS = 16  # 6 V2 infer, 6 /predict (HTTP keep-alive), 4 gRPC channels
PAUSE_S = 0.05  # between one connection's requests: at most 320 requests/s in all, CPU left for the cluster
KINDS = ["v2"] * 6 + ["predict"] * 6 + ["grpc"] * 4
PIXELS = bytes(range(0, 256, 3))[:28] * 28  # 784 bytes: a fixed 28x28 picture
PNG = (ROOT / "examples" / "digits" / "7.png").read_bytes()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------------- the load


@dataclass
class Tally:
    """What the requests started in one phase came to."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    in_flight: int = 0
    by_kind: collections.Counter[str] = field(default_factory=collections.Counter)
    replicas: collections.Counter[str] = field(default_factory=collections.Counter)
    versions: collections.Counter[str] = field(default_factory=collections.Counter)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def nodes(self) -> set[str]:
        return {name.split("/")[0] for name in self.replicas}


class Load:
    """16 connections in closed loops until stopped; each answer is tallied in the phase it started in.
    A listener (for the model-version phases) sees (replica, version, kind, monotonic time) of each answer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.phase = "warm-up"
        self.tallies: dict[str, Tally] = collections.defaultdict(Tally)
        self.stop = threading.Event()
        self.listener: Callable[[str, str, str, float], None] | None = None
        self.threads = [threading.Thread(target=self._loop, args=(kind,), daemon=True) for kind in KINDS]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=40)

    @contextlib.contextmanager
    def during(self, phase: str) -> Iterator[Tally]:
        with self.lock:
            self.phase = phase
            tally = self.tallies[phase]
        try:
            yield tally
        finally:
            with self.lock:
                self.phase = f"after {phase}"
            wait_until(60, f"the requests of '{phase}' to finish", lambda: tally.in_flight == 0)

    def _loop(self, kind: str) -> None:
        request = {"v2": self._v2, "predict": self._predict, "grpc": self._grpc}[kind]
        state: dict[str, Any] = {}
        while not self.stop.is_set():
            self.one(kind, request, state)
            self.stop.wait(PAUSE_S)

    def one(
        self, kind: str, request: Callable[[dict[str, Any]], tuple[str, str]], state: dict[str, Any]
    ) -> bool:
        with self.lock:
            tally = self.tallies[self.phase]
            tally.sent += 1
            tally.in_flight += 1
            tally.by_kind[kind] += 1
        try:
            replica, version = request(state)
            ok, reason = True, ""
        except Exception as exc:  # every failure is counted, with its reason
            ok, reason, replica, version = False, f"{kind}: {describe(exc)}", "", ""
            state.clear()  # a fresh connection next time
        now = time.monotonic()
        with self.lock:
            tally.in_flight -= 1
            if ok:
                tally.ok += 1
                if replica:
                    tally.replicas[replica] += 1
                tally.versions[version] += 1
            else:
                tally.failed += 1
                tally.reasons[reason] += 1
            listener = self.listener
        if ok and listener is not None:
            listener(replica, version, kind, now)
        return ok

    @staticmethod
    def _http(state: dict[str, Any], path: str, body: bytes, content_type: str) -> tuple[str, dict[str, Any]]:
        conn = state.get("http")
        if conn is None:
            conn = state["http"] = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=60)
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise HttpError(response.status, data[:200].decode("utf-8", "replace"))
        return response.getheader("x-served-by") or "", json.loads(data)

    def _v2(self, state: dict[str, Any]) -> tuple[str, str]:
        body = {
            "inputs": [{"name": "pixels", "datatype": "UINT8", "shape": [1, 28, 28, 1], "data": list(PIXELS)}]
        }
        replica, answer = self._http(
            state, f"/v2/models/{MODEL}/infer", json.dumps(body).encode(), "application/json"
        )
        return replica, str(answer["model_version"])

    def _predict(self, state: dict[str, Any]) -> tuple[str, str]:
        replica, answer = self._http(state, f"/predict?model={MODEL}", PNG, "image/png")
        if answer["predictions"][0]["label"] != "7":
            raise HttpError(200, f"a wrong answer: {answer}")
        return replica, str(answer["version"])

    def _grpc(self, state: dict[str, Any]) -> tuple[str, str]:
        call = state.get("grpc")
        if call is None:
            channel = grpc.insecure_channel(f"127.0.0.1:{GRPC_PORT}")
            state["channel"] = channel
            call = state["grpc"] = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=pb.ModelInferRequest.SerializeToString,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
        tensor = pb.ModelInferRequest.InferInputTensor(name="pixels", datatype="UINT8", shape=[1, 28, 28, 1])
        answer = call(
            pb.ModelInferRequest(model_name=MODEL, inputs=[tensor], raw_input_contents=[PIXELS]), timeout=60
        )
        return "", answer.model_version


class HttpError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status} {body}")
        self.status = status


def describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        return f"gRPC {exc.code().name}: {exc.details()}"[:160]
    if isinstance(exc, HttpError):
        return str(exc)[:160]
    return f"{type(exc).__name__}: {exc}"[:160]


# -------------------------------------------------------------------------------------- the cluster


def docker(host: str, *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [DOCKER, "-H", host, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def wait_until(limit_s: float, what: str, condition: Callable[[], bool], every_s: float = 0.5) -> float:
    """Poll until the condition holds (bounded); the seconds it took. Raises TimeoutError past the limit."""
    start = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - start
        except Exception as exc:  # a condition that cannot be read yet is not met
            last = describe(exc)
        else:
            last = "not yet"
        if time.monotonic() - start > limit_s:
            raise TimeoutError(f"gave up after {limit_s:.0f} s waiting for {what} ({last})")
        time.sleep(every_s)


def nodes() -> dict[str, str]:
    """Node id -> hostname."""
    out = docker(DOCKER1, "node", "ls", "--format", "{{.ID}} {{.Hostname}}")
    return dict(line.split() for line in out.splitlines())


def running_tasks() -> list[dict[str, str]]:
    """The service's tasks that are running now: id, node (hostname), container id, image."""
    ids = docker(DOCKER1, "service", "ps", "-q", "--filter", "desired-state=running", SERVICE).split()
    if not ids:
        return []
    hostnames = nodes()
    tasks = []
    for task in json.loads(docker(DOCKER1, "inspect", "--type", "task", *ids)):
        if task["Status"]["State"] != "running":
            continue
        tasks.append(
            {
                "id": task["ID"],
                "node": hostnames.get(task["NodeID"], task["NodeID"]),
                "container": task["Status"]["ContainerStatus"]["ContainerID"],
                "image": task["Spec"]["ContainerSpec"]["Image"].split("@")[0],
                "slot": str(task.get("Slot", "")),
            }
        )
    return tasks


def haproxy_up() -> tuple[int, int]:
    """Servers HAProxy's checks find ready: in the HTTP backend, in the gRPC backend."""
    with urllib.request.urlopen(f"http://127.0.0.1:{STATS_PORT}/stats;csv", timeout=5) as answer:
        rows = answer.read().decode().splitlines()
    header = rows[0].lstrip("# ").split(",")
    up = collections.Counter[str]()
    for row in rows[1:]:
        cells = dict(zip(header, row.split(","), strict=False))
        if cells.get("svname") not in ("FRONTEND", "BACKEND") and cells.get("status") == "UP":
            up[cells.get("pxname", "")] += 1
    return up["modelserve_http"], up["modelserve_grpc"]


def stopping_tasks() -> int:
    """Tasks told to stop that still run (draining)."""
    out = docker(DOCKER1, "service", "ps", "--format", "{{.DesiredState}} {{.CurrentState}}", SERVICE)
    return sum(
        1 for line in out.splitlines() if not line.startswith("Running") and " Running " in f" {line} "
    )


def converged(replicas: int) -> bool:
    """This many running (healthy) tasks and none still draining, and exactly this many servers ready in
    both of HAProxy's backends."""
    return len(running_tasks()) == replicas and stopping_tasks() == 0 and haproxy_up() == (replicas, replicas)


def prometheus(query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.loads(answer.read())
    if body.get("status") != "success":
        raise RuntimeError(f"prometheus: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def prometheus_value(query: str) -> float | None:
    result = prometheus(query)
    return float(result[0]["value"][1]) if result else None


# ----------------------------------------------------------------------------------------- the store


def s3_client() -> Any:
    import boto3  # only where the S3 phases run (the replicas read s3://)

    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{S3_PORT}",
        aws_access_key_id=ENV.get("AWS_ACCESS_KEY_ID", "modelserve"),
        aws_secret_access_key=ENV.get("AWS_SECRET_ACCESS_KEY", "modelserve-secret"),
        region_name="us-east-1",
    )


def upload_version(version: int, corrupt: bool = False) -> None:
    """models/digits/1's files as version N (its model.onnx replaced by junk when corrupt), then the
    version's _COMPLETE marker, last (docs/operations.md: when a version in a store is complete)."""
    s3 = s3_client()
    source = ROOT / "models" / MODEL / "1"
    for path in sorted(p for p in source.iterdir() if p.is_file()):
        body = path.read_bytes()
        if corrupt and path.suffix == ".onnx":
            body = b"this is not an ONNX graph" * 100
        s3.put_object(Bucket="models", Key=f"{MODEL}/{version}/{path.name}", Body=body)
    s3.put_object(Bucket="models", Key=f"{MODEL}/{version}/_COMPLETE", Body=b"")


def delete_version(version: int) -> None:
    s3 = s3_client()
    listed = s3.list_objects_v2(Bucket="models", Prefix=f"{MODEL}/{version}/")
    for item in listed.get("Contents", []):
        s3.delete_object(Bucket="models", Key=item["Key"])


# ---------------------------------------------------------------------------------------- the checks


@dataclass
class Result:
    name: str
    tally: Tally | None
    passed: bool | None  # None: skipped
    figures: str


class Scenario:
    def __init__(self) -> None:
        self.load = Load()
        self.results: list[Result] = []
        self.replicas = 3

    def check(self, name: str, tally: Tally | None, passed: bool, figures: str) -> None:
        self.results.append(Result(name, tally, passed, figures))
        log(f"{'PASS' if passed else 'FAIL'} {name}: {figures}")

    def skip(self, name: str, reason: str) -> None:
        self.results.append(Result(name, None, None, f"SKIPPED: {reason}"))
        log(f"SKIP {name}: {reason}")

    def phase(self, name: str, body: Callable[[Tally], tuple[bool, str]]) -> None:
        """Run one phase under the load; a phase that raises fails with the reason (the next ones go on)."""
        log(f"-- {name}")
        try:
            with self.load.during(name) as tally:
                passed, figures = body(tally)
        except Exception as exc:  # reported as this phase's failure
            tally = self.load.tallies[name]
            self.check(name, tally, False, f"{describe(exc)}; {self.counts(tally)}")
            return
        self.check(name, tally, passed and tally.sent > 0, f"{figures}; {self.counts(tally)}")

    @staticmethod
    def counts(tally: Tally) -> str:
        text = f"{tally.sent} sent ({dict(tally.by_kind)}), {tally.failed} failed"
        if tally.reasons:
            text += f" {dict(tally.reasons.most_common(3))}"
        return text

    # -- the phases

    def spread(self, tally: Tally) -> tuple[bool, str]:
        wait_until(
            120, "answers from replicas on both nodes", lambda: len(tally.nodes) >= 2 and tally.ok >= 300
        )
        placement = collections.Counter(t["node"] for t in running_tasks())
        return (
            tally.failed == 0 and NODE2_NAME in tally.nodes and len(tally.nodes) == 2,
            f"answers by replica {dict(tally.replicas)}; tasks per node {dict(placement)}",
        )

    def rolling_update(self, tally: Tally) -> tuple[bool, str]:
        image = "mscl/modelserve:2"
        start = time.monotonic()
        docker(DOCKER1, "service", "update", "--detach", "--no-resolve-image", "--image", image, SERVICE)
        state = ""

        def done() -> bool:
            nonlocal state
            info = json.loads(docker(DOCKER1, "service", "inspect", SERVICE))[0]
            state = (info.get("UpdateStatus") or {}).get("State", "")
            if state in ("rollback_completed", "rollback_paused", "paused"):
                raise RuntimeError(f"the update ended in {state}: {info.get('UpdateStatus')}")
            tasks = running_tasks()
            return state == "completed" and len(tasks) == 3 and all(t["image"] == image for t in tasks)

        wait_until(400, "the rolling update to complete", done, every_s=1)
        wait_until(60, "HAProxy to see 3 ready replicas", lambda: converged(3))
        took = time.monotonic() - start
        return tally.failed == 0, f"update {state} in {took:.0f} s, every task on modelserve:2"

    def new_version(self, tally: Tally) -> tuple[bool, str]:
        replicas = {t["slot"] for t in running_tasks()}
        first_v2: dict[str, float] = {}

        def listener(replica: str, version: str, kind: str, now: float) -> None:
            if replica and version == "2" and replica not in first_v2:
                first_v2[replica] = now

        self.load.listener = listener
        try:
            upload_version(2)
            uploaded = time.monotonic()
            log(f"uploaded {MODEL}/2; waiting for every replica to serve it")
            wait_until(
                120,
                "every replica to answer with version 2",
                lambda: {r.split("/")[-1] for r in first_v2} >= replicas,
            )
        finally:
            self.load.listener = None
        latest = max(first_v2.values()) - uploaded
        # The answers after the switch: from here every replica must keep serving 2.
        with self.load.during("after the new version"):
            time.sleep(2)
        after = self.load.tallies["after the new version"]
        return (
            tally.failed == 0 and set(after.versions) == {"2"} and after.failed == 0,
            f"every replica ({len(first_v2)}) served version 2 within {latest:.1f} s of the upload "
            f"(poll interval {POLL_S:.0f} s); answers by version {dict(tally.versions)}",
        )

    def corrupt_version(self, tally: Tally) -> tuple[bool, str]:
        query = f'sum(modelserve_model_load_failures_total{{model="{MODEL}"}})'
        before = prometheus_value(query) or 0.0
        upload_version(3, corrupt=True)
        log(f"uploaded a corrupt {MODEL}/3; waiting for each replica's failed load")
        wait_until(
            120, "a failed load on every replica", lambda: (prometheus_value(query) or 0) - before >= 3
        )
        failures = (prometheus_value(query) or 0) - before
        time.sleep(POLL_S)  # one more poll under load: still version 2 everywhere
        delete_version(3)
        return (
            tally.failed == 0 and set(tally.versions) == {"2"},
            f"{failures:.0f} failed loads of version 3, answers by version {dict(tally.versions)}",
        )

    def drain(self, tally: Tally) -> tuple[bool, str]:
        start = time.monotonic()
        docker(DOCKER1, "node", "update", "--availability", "drain", NODE2_NAME)
        try:
            wait_until(
                240,
                "every replica off node 2 and 3 ready",
                lambda: converged(3) and all(t["node"] != NODE2_NAME for t in running_tasks()),
                every_s=1,
            )
        finally:
            docker(DOCKER1, "node", "update", "--availability", "active", NODE2_NAME)
        took = time.monotonic() - start
        placement = collections.Counter(t["node"] for t in running_tasks())
        return tally.failed == 0, f"drained in {took:.0f} s, tasks per node now {dict(placement)}"

    def kill(self, tally: Tally) -> tuple[bool, str]:
        victim = running_tasks()[0]
        host = DOCKER2 if victim["node"] == NODE2_NAME else DOCKER1
        start = time.monotonic()
        docker(host, "kill", "--signal", "KILL", victim["container"])
        log(f"SIGKILL to the replica in slot {victim['slot']} on {victim['node']}")

        def replaced() -> bool:
            tasks = running_tasks()
            return victim["id"] not in {t["id"] for t in tasks} and converged(3)

        wait_until(240, "the killed replica to be replaced and 3 ready", replaced, every_s=1)
        took = time.monotonic() - start
        return (
            tally.failed <= CONNECTIONS,
            f"back to 3/3 ready in {took:.0f} s; {tally.failed} failed (at most the {CONNECTIONS} "
            f"connections can have been in flight on it)",
        )

    def scale(self, tally: Tally) -> tuple[bool, str]:
        figures = []
        for replicas in (5, 2):
            start = time.monotonic()
            docker(DOCKER1, "service", "scale", "--detach", f"{SERVICE}={replicas}")
            wait_until(300, f"{replicas} ready replicas", lambda n=replicas: converged(n), every_s=1)  # type: ignore[misc]
            placement = collections.Counter(t["node"] for t in running_tasks())
            figures.append(f"{replicas} ready in {time.monotonic() - start:.0f} s {dict(placement)}")
        self.replicas = 2
        return tally.failed == 0, "; ".join(figures)

    def counters(self) -> None:
        """Load stopped: Prometheus' sum of the replicas' request counters grows by exactly the requests
        sent (each answered) while no replica comes or goes."""
        name = "prometheus counters"
        log(f"-- {name}")
        query = "sum(modelserve_requests_total)"
        targets = 'count(up{job="modelserve"} == 1)'
        try:
            wait_until(
                60,
                f"Prometheus to scrape {self.replicas} replicas",
                lambda: prometheus_value(targets) == self.replicas,
            )
            # Settled: the same sum on two scrapes in a row (the load's last answers counted).
            previous: list[float | None] = [None]

            def settled() -> bool:
                value = prometheus_value(query)
                stable = value is not None and value == previous[0]
                previous[0] = value
                return stable

            wait_until(60, "the counters to settle", settled, every_s=3)
            before = prometheus_value(query) or 0.0
            with self.load.during(name) as tally:
                per_connection = 40
                threads = [
                    threading.Thread(target=self._send, args=(kind, per_connection), daemon=True)
                    for kind in KINDS
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(timeout=300)
            sent = tally.sent
            wait_until(
                60, "Prometheus to count them", lambda: (prometheus_value(query) or 0) - before >= sent
            )
            time.sleep(5)  # and nothing more than them
            counted = (prometheus_value(query) or 0) - before
            by_replica = {
                r["metric"].get("instance", "?"): float(r["value"][1])
                for r in prometheus("sum by (instance) (modelserve_requests_total)")
            }
            self.check(
                name,
                tally,
                counted == sent and tally.failed == 0,
                f"{sent} sent, {counted:.0f} counted by Prometheus (sum over {len(by_replica)} replicas); "
                f"{self.counts(tally)}",
            )
        except Exception as exc:
            self.check(name, self.load.tallies.get(name), False, describe(exc))

    def _send(self, kind: str, count: int) -> None:
        request = {"v2": self.load._v2, "predict": self.load._predict, "grpc": self.load._grpc}[kind]
        state: dict[str, Any] = {}
        for _ in range(count):
            self.load.one(kind, request, state)

    # -- the whole run

    def run(self) -> int:
        started = time.monotonic()
        log(
            f"load: {CONNECTIONS} connections through HAProxy (127.0.0.1:{HTTP_PORT} HTTP, :{GRPC_PORT} gRPC h2c)"
        )
        try:
            wait_until(300, "3 ready replicas behind HAProxy", lambda: converged(3), every_s=1)
        except TimeoutError as exc:
            print(f"FAIL: the stack did not come up: {exc}")
            with contextlib.suppress(Exception):
                print(docker(DOCKER1, "service", "ls"))
                print(docker(DOCKER1, "service", "ps", "--no-trunc", SERVICE))
            print("cluster: 0 passed, 1 failed")
            return 1
        self.load.start()
        wait_until(60, "the first answers", lambda: self.load.tallies["warm-up"].ok >= 16)
        self.phase("both nodes answer", self.spread)
        self.phase("rolling update", self.rolling_update)
        if S3_MODELS:
            self.phase("new model version", self.new_version)
            self.phase("corrupt version", self.corrupt_version)
        else:
            self.skip("new model version", S3_SKIP_REASON)
            self.skip("corrupt version", S3_SKIP_REASON)
        self.phase("drain node 2", self.drain)
        self.phase("SIGKILL a replica", self.kill)
        self.phase("scale 3 -> 5 -> 2", self.scale)
        self.load.close()
        self.counters()
        self.report(time.monotonic() - started)
        return 0 if all(r.passed is not False for r in self.results) else 1

    def report(self, seconds: float) -> None:
        print(
            "\n== cluster test figures (load: 16 connections; V2 infer, /predict and gRPC ModelInfer on digits)"
        )
        print(f"{'phase':<22} {'sent':>7} {'ok':>7} {'failed':>7}  result  figures")
        for r in self.results:
            t = r.tally
            sent, ok, failed = (t.sent, t.ok, t.failed) if t else ("-", "-", "-")
            verdict = {True: "pass", False: "FAIL", None: "skip"}[r.passed]
            print(f"{r.name:<22} {sent:>7} {ok:>7} {failed:>7}  {verdict:<6}  {r.figures}")
        total = sum(t.sent for t in self.load.tallies.values())
        failed = sum(t.failed for t in self.load.tallies.values())
        print(f"all requests: {total} sent, {failed} failed; scenario {seconds:.0f} s")
        passed = sum(r.passed is True for r in self.results)
        failures = sum(r.passed is False for r in self.results)
        skipped = sum(r.passed is None for r in self.results)
        print(f"cluster: {passed} passed, {failures} failed" + (f", {skipped} skipped" if skipped else ""))


if __name__ == "__main__":
    sys.exit(Scenario().run())
