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
        # Each picture takes seconds to decode on a busy machine: the client waits as long as the server.
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=n)) as ac:
            one = lambda: ac.post("/predict?model=digits", files={"file": ("big.png", png)})  # noqa: E731
            return await asyncio.gather(*(one() for _ in range(n)))

    start = time.monotonic()
    answers = asyncio.run(main())
    return answers, time.monotonic() - start


def test_a_crowd_of_big_images_past_the_decoding_bound_gets_503_with_retry_after(tmp_path: Path) -> None:
    # A deadline no decoding backlog reaches, however busy the machine: this test is about the bound
    # (503), the next one about deadlines (504). 12 at once against a bound of 4: some are refused.
    env = {
        "MODELSERVE_PREPROCESS_THREADS": "1",
        "MODELSERVE_MAX_PREPROCESS_QUEUE": "4",
        "MODELSERVE_TIMEOUT_S": "280",
    }
    with run_server(MODELS, tmp_path, env=env) as srv:
        answers, _ = _crowd(srv.url, 12)
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
        answers, _ = _crowd(srv.url, 12)  # about 7 s of decoding if every one ran
        statuses = Counter(a.status_code for a in answers)
        assert set(statuses) <= {200, 504} and statuses[504] >= 6, statuses
        late = [a.json()["error"] for a in answers if a.status_code == 504]
        assert all("deadline" in e and "not run" in e for e in late), late[:2]
        # Counted, not timed: the decoding pool's own answer says it skipped the job. One decoded anyway
        # would reach the batcher past its deadline and get the batcher's 504 ("before it was queued").
        skipped = [e for e in late if "waiting to be decoded" in e]
        assert len(skipped) >= 6, late


def test_while_decoding_is_full_an_upload_is_refused_before_its_body_is_read(tmp_path: Path) -> None:
    """Two clients keep the decoding pool full (one decoding, one waiting); an upload that sends its
    headers and not a byte of its 20 MB body is answered 503 and closed. It can only be answered before
    its body is read: the body never comes (a server waiting for it would answer 408 after 60 s)."""
    env = {"MODELSERVE_PREPROCESS_THREADS": "1", "MODELSERVE_MAX_PREPROCESS_QUEUE": "2"}
    png = big_png()
    with run_server(MODELS, tmp_path, env=env) as srv:

        async def main() -> tuple[int, str, int]:
            stop = asyncio.Event()

            async def keep_busy(ac: httpx.AsyncClient) -> None:
                while not stop.is_set():
                    r = await ac.post("/predict?model=digits", files={"file": ("b.png", png)})
                    assert r.status_code in (200, 503), r.text

            async def probe() -> bytes | None:
                """Headers only; the answer, or None if the server is waiting for the body (not full)."""
                reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
                writer.write(
                    b"POST /predict?model=digits HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                    b"Content-Length: 20000000\r\n\r\n"  # and not a byte of it
                )
                try:
                    return await asyncio.wait_for(reader.read(), 5)  # to EOF: the server closes
                except TimeoutError:
                    return None  # admitted: the pool had room at that moment; try again
                finally:
                    writer.close()

            async with httpx.AsyncClient(base_url=srv.url, timeout=120) as ac:
                busy = [asyncio.create_task(keep_busy(ac)) for _ in range(2)]
                probes = 0
                answer = None
                while answer is None and probes < 20:
                    probes += 1
                    answer = await probe()
                stop.set()
                await asyncio.gather(*busy)
            assert answer is not None, f"{probes} probes found the decoding pool never full"
            head, _, body = answer.partition(b"\r\n\r\n")
            return int(head.split()[1]), head.decode().lower() + body.decode(), probes

        status, text, _ = asyncio.run(main())
    assert status == 503 and "busy decoding" in text and "connection: close" in text, text
