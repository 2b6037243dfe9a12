"""The playground's audio panel in headless Chromium, against the shipped audio model: upload example
WAVs, record from Chromium's fake microphone, run the snippets that reproduce the requests."""

from __future__ import annotations

import base64
import io
import json
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.page import answer_count, by_id, open_page, run_snippet, top_label
from tests.conftest import EXAMPLES, Server

Shot = Callable[[WebDriver, str], Path]


@pytest.fixture(scope="module")
def page(chrome: Callable[..., WebDriver]) -> WebDriver:
    return chrome()


def served(server: Server, kind: str) -> dict[str, Any]:
    """The first shipped model of this input kind (the repository ships at least one of each)."""
    models = [m for m in httpx.get(f"{server.url}/models").json()["models"] if m["input_kind"] == kind]
    assert models, f"no {kind} model is served from models/"
    return models[0]


def audio_examples(model: dict[str, Any]) -> list[tuple[str, Path]]:
    """(label, file) for the example WAVs named <label>-<voice>.wav."""
    found = []
    for folder in EXAMPLES.iterdir():
        for path in sorted(folder.glob("*.wav")):
            label = path.stem.split("-", 1)[0]
            if label in model["labels"]:
                found.append((label, path))
    assert found, f"no example WAV for {model['name']} in {EXAMPLES}"
    return found


def test_upload_a_wav(page: WebDriver, server: Server, screenshot: Shot) -> None:
    model = served(server, "audio")
    open_page(page, server.url, model["name"])
    examples = audio_examples(model)
    for label, path in examples:
        before = answer_count(page)
        by_id(page, "audio-file").send_keys(str(path))
        assert top_label(page, before) == label, path.name
    # The waveform was drawn, the spectrogram the model heard is shown.
    inked = page.execute_script(
        "const c = document.querySelector('canvas.wave');"
        "return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 == 3 && v > 0)"
    )
    assert inked, "no waveform"
    assert by_id(page, "seen-image").get_attribute("src").startswith("data:image/png;base64,")
    screenshot(page, "uploaded")
    label, path = examples[-1]
    assert json.loads(run_snippet(page, "curl", path.parent))["predictions"][0]["label"] == label
    assert run_snippet(page, "python", path.parent).split()[0] == label


def test_record_from_the_microphone(
    page: WebDriver, server: Server, screenshot: Shot, tmp_path: Path
) -> None:
    """Chromium's fake microphone (a test tone): recorded, encoded to WAV in the page, answered."""
    model = served(server, "audio")
    open_page(page, server.url, model["name"])
    # Keep what the page sends (the page's CSP lets no script fetch its blob: URLs back).
    page.execute_script(
        """const send = window.fetch;
        window.fetch = (url, options) => { window.sentBody = options && options.body; return send(url, options); };"""
    )
    before = answer_count(page)
    by_id(page, "record").click()
    label = top_label(page, before)  # the recording stops by itself at the model's longest clip
    assert label in model["labels"]
    screenshot(page, "recorded")
    # The recording the page sent: a 16-bit mono WAV at the model's rate.
    assert page.find_element(By.CSS_SELECTOR, "#repro-file a").get_attribute("download") == "recording.wav"
    b64 = page.execute_async_script(
        """const done = arguments[arguments.length - 1];
        window.sentBody.get("file").arrayBuffer().then(b => {
          let s = ""; for (const x of new Uint8Array(b)) s += String.fromCharCode(x); done(btoa(s)); });"""
    )
    data = base64.b64decode(b64)
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        assert w.getframerate() == model["audio"]["sample_rate"]
        assert w.getnframes() > 0.2 * w.getframerate()
    (tmp_path / "recording.wav").write_bytes(data)
    answer = json.loads(run_snippet(page, "curl", tmp_path))
    assert answer["predictions"][0]["label"] == label
