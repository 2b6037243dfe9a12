"""The built image serving its models from a real S3 store: SeaweedFS on 127.0.0.1 (tests/s3server.py),
the container on the host network with the standard AWS variables. Checks every model is served from the
bucket and a digit is classified. Usage: python .ci/container-s3.py IMAGE (run from the repository root)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import MODELS, free_port
from tests.s3server import seaweedfs, upload_folder


def main(image: str) -> int:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp, seaweedfs(Path(tmp), bucket="models") as s3:
        client = s3.client()
        names = sorted(p.name for p in MODELS.iterdir() if (p / "1").is_dir())
        for name in names:
            upload_folder(client, "models", MODELS / name, f"repo/{name}")
            client.put_object(Bucket="models", Key=f"repo/{name}/1/_COMPLETE", Body=b"")
        env = [f"--env={k}={v}" for k, v in s3.env(MODELSERVE_MODELS_DIR="s3://models/repo").items()]
        name = f"modelserve-s3-{port}"
        subprocess.run(
            [
                "podman",
                "run",
                "-d",
                "--rm",
                "--name",
                name,
                "--network=host",
                *env,
                image,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--grpc-port",
                "0",
                "--workers",
                "1",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    print(subprocess.run(["podman", "logs", name], capture_output=True, text=True).stderr)
                    return 1
                time.sleep(0.2)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/repository/index", data=b"") as r:
                served = sorted(row["name"] for row in json.load(r) if row["state"] == "READY")
            body = (Path("examples/digits/7.png")).read_bytes()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/predict?model=digits",
                data=body,
                headers={"Content-Type": "image/png"},
            )
            with urllib.request.urlopen(request) as r:
                label = json.load(r)["predictions"][0]["label"]
            print(f"served from S3: {served}; digits says {label}")
            return 0 if served == names and label == "7" else 1
        finally:
            subprocess.run(["podman", "stop", "-t", "10", name], capture_output=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
