"""The preprocessing pool is bounded like a batcher queue, and a request's deadline covers its decoding."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.conftest import MODELS, run_server
from tests.payloads import big_png


def _crowd(url: str, n: int) -> tuple[list[httpx.Response], float]:
    png = big_png()

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=n)) as ac:
            one = lambda: ac.post("/predict?model=digits", files={"file": ("big.png", png)})  # noqa: E731
            return await asyncio.gather(*(one() for _ in range(n)))

    start = time.monotonic()
    answers = asyncio.run(main())
    return answers, time.monotonic() - start


def test_a_crowd_of_big_images_past_the_decoding_bound_gets_503_with_retry_after(tmp_path: Path) -> None:
    env = {"MODELSERVE_PREPROCESS_THREADS": "1", "MODELSERVE_MAX_PREPROCESS_QUEUE": "4"}
    with run_server(MODELS, tmp_path, env=env) as srv:
        answers, _ = _crowd(srv.url, 24)
        statuses = Counter(a.status_code for a in answers)
        assert set(statuses) == {200, 503} and statuses[200] >= 4, statuses
        refused = [a for a in answers if a.status_code == 503]
        assert all(a.headers["retry-after"] == "1" and "busy decoding" in a.json()["error"] for a in refused)
        assert all(a.json()["predictions"][0]["label"] for a in answers if a.status_code == 200)


def test_a_request_still_waiting_to_decode_at_its_deadline_answers_504_and_is_not_decoded(
    tmp_path: Path,
) -> None:
    env = {
        "MODELSERVE_PREPROCESS_THREADS": "1",
        "MODELSERVE_MAX_PREPROCESS_QUEUE": "100",
        "MODELSERVE_TIMEOUT_S": "1.5",
    }
    with run_server(MODELS, tmp_path, env=env) as srv:
        answers, took = _crowd(srv.url, 12)  # about 7 s of decoding if every one ran
        statuses = Counter(a.status_code for a in answers)
        assert set(statuses) <= {200, 504} and statuses[504] >= 6, statuses
        late = [a.json()["error"] for a in answers if a.status_code == 504]
        assert all("deadline" in e and "not run" in e for e in late), late[:2]
        assert took < 5, f"requests past their deadline were decoded anyway: {took:.1f} s"
