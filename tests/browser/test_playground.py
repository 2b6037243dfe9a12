"""The playground in a real headless Chromium against a real server: draw, upload, drop, type, keys."""

from __future__ import annotations

import base64
import io
import json
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.page import (
    DIGITS,
    SEVEN,
    answer_count,
    by_id,
    choose,
    draw,
    open_page,
    run_snippet,
    severe_console_messages,
    top_label,
    wait,
)
from tests.conftest import EXAMPLES, MODELS, Server, run_server

Shot = Callable[[WebDriver, str], Path]


@pytest.fixture(scope="module")
def page(chrome: Callable[..., WebDriver]) -> WebDriver:
    return chrome()


def image_model() -> str:
    """The digits model the drawing tests need (MNIST-style digits)."""
    return "digits"


def text_model() -> str:
    return "sentiment"


@pytest.mark.parametrize("pointer", ["mouse", "pen", "touch"])
def test_draw_a_seven_with_pointer_events(
    page: WebDriver, server: Server, screenshot: Shot, pointer: str
) -> None:
    open_page(page, server.url, image_model())
    canvas = page.find_element(By.CSS_SELECTOR, "canvas.draw")
    by_id(page, "clear").click()
    before = answer_count(page)
    draw(page, canvas, SEVEN, pointer)
    label = top_label(page, before)
    screenshot(page, "drawn")
    assert label == "7", f"a {pointer}-drawn 7 read as {label}"
    # What the model saw: the server's own preprocessing, sent back with ?explain=1.
    seen = by_id(page, "seen-image")
    assert seen.get_attribute("src").startswith("data:image/png;base64,")
    assert "28x28" in seen.get_attribute("alt")


def test_draw_digits(page: WebDriver, server: Server, screenshot: Shot) -> None:
    """Several digits drawn one after another with the mouse (Clear between): each read right."""
    open_page(page, server.url, image_model())
    canvas = page.find_element(By.CSS_SELECTOR, "canvas.draw")
    read = {}
    for digit, stroke in DIGITS.items():
        by_id(page, "clear").click()
        before = answer_count(page)
        draw(page, canvas, stroke, "mouse")
        read[digit] = top_label(page, before)
        screenshot(page, f"digit-{digit}")
    assert read == {d: d for d in DIGITS}


def test_upload_an_example_file_and_run_its_curl(page: WebDriver, server: Server, screenshot: Shot) -> None:
    open_page(page, server.url, image_model())
    folder = EXAMPLES / image_model()
    for digit in ("3", "8"):
        before = answer_count(page)
        by_id(page, "image-file").send_keys(str(folder / f"{digit}.png"))
        assert top_label(page, before) == digit
    screenshot(page, "uploaded")
    # The curl and Python snippets the page shows reproduce the request, run where the file is.
    curl = json.loads(run_snippet(page, "curl", folder))
    assert curl["predictions"][0]["label"] == "8"
    python = run_snippet(page, "python", folder).split()
    assert python[0] == "8"
    assert float(python[1]) == pytest.approx(curl["predictions"][0]["score"], abs=1e-6)


def test_upload_fashion_examples(page: WebDriver, server: Server) -> None:
    """The other image model: each example (a photo, a cut-out, a catalogue picture) read right."""
    models = {m["name"]: m for m in httpx.get(f"{server.url}/models").json()["models"]}
    labels = models["fashion"]["labels"]
    open_page(page, server.url, "fashion")
    for path in sorted((EXAMPLES / "fashion").iterdir()):
        # ankle-boot.png is "Ankle boot", trouser-photo.jpg is "Trouser".
        expected = [lab for lab in labels if path.stem.startswith(lab.lower().replace(" ", "-"))]
        assert len(expected) == 1, path.name
        before = answer_count(page)
        by_id(page, "image-file").send_keys(str(path))
        assert top_label(page, before) == expected[0], path.name


def test_drop_a_file_on_the_panel(page: WebDriver, server: Server) -> None:
    open_page(page, server.url, image_model())
    choose(page, text_model())  # mounting the image panel again must not double its drop handler
    choose(page, image_model())
    before = answer_count(page)
    data = list((EXAMPLES / image_model() / "4.png").read_bytes())
    page.execute_script(  # a real drop event carrying a File, as the OS hands one to the page
        """const file = new File([new Uint8Array(arguments[0])], "4.png", {type: "image/png"});
        const dt = new DataTransfer(); dt.items.add(file);
        document.getElementById("image-drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));""",
        data,
    )
    assert top_label(page, before) == "4"
    time.sleep(0.5)
    assert answer_count(page) == before + 1, "one drop, one request"


def test_type_a_review(page: WebDriver, server: Server, screenshot: Shot) -> None:
    open_page(page, server.url, text_model())
    area = by_id(page, "text-input")
    before = answer_count(page)
    area.send_keys("I loved this film")
    assert top_label(page, before) == "positive"
    tokens = [t.text for t in page.find_elements(By.CSS_SELECTOR, "#seen .token")]
    # The transformer's WordPiece tokens, its special tokens included, as the model saw them.
    assert tokens == ["[CLS]", "i", "loved", "this", "film", "[SEP]"]
    screenshot(page, "positive")
    curl = json.loads(run_snippet(page, "curl", Path.cwd()))
    assert curl["predictions"][0]["label"] == "positive"
    assert run_snippet(page, "python", Path.cwd()).split()[0] == "positive"
    # Typing on: the answer follows the text, and only the latest text's answer is shown.
    area.clear()
    before = answer_count(page)
    area.send_keys("terrible, a waste of money")
    assert top_label(page, before) == "negative"
    # Ctrl+Enter answers at once.
    before = answer_count(page)
    area.send_keys(Keys.CONTROL, Keys.ENTER)
    assert top_label(page, before) == "negative"


def test_server_errors_are_shown_as_the_server_wrote_them(page: WebDriver, server: Server) -> None:
    open_page(page, server.url, text_model())
    before = answer_count(page)
    area = by_id(page, "text-input")
    page.execute_script("arguments[0].value = 'x'.repeat(20001)", area)  # typing 20,001 keys takes long
    area.send_keys(Keys.CONTROL, Keys.ENTER)
    wait(page, lambda d: answer_count(d) > before, "no answer")
    expected = httpx.post(f"{server.url}/models/{text_model()}/predict", json={"text": "x" * 20_001}).json()
    assert by_id(page, "answer-error").text == expected["error"]
    assert "422" in by_id(page, "answer-status").text


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(MODELS, tmp_path_factory.mktemp("keyed"), env={"MODELSERVE_API_KEYS": "right-key"}) as s:
        yield s


def test_api_keys_wrong_key_shows_the_servers_401(
    page: WebDriver, keyed_server: Server, screenshot: Shot
) -> None:
    url = keyed_server.url
    page.get(f"{url}/")  # the page itself is public
    page.execute_script("sessionStorage.clear()")
    page.get(f"{url}/#{text_model()}")
    wait(page, lambda d: not by_id(d, "key-panel").get_attribute("hidden"), "the page did not ask for a key")
    missing = httpx.get(f"{url}/models").json()["error"]
    assert missing in by_id(page, "key-error").text
    key = by_id(page, "api-key")
    key.send_keys("wrong-key", Keys.ENTER)
    wrong = httpx.get(f"{url}/models", headers={"Authorization": "Bearer wrong-key"})
    assert wrong.status_code == 401
    wait(page, lambda d: by_id(d, "key-error").text == wrong.json()["error"], "the 401 message is not shown")
    screenshot(page, "wrong-key")
    assert by_id(page, "model-list").get_attribute("hidden")
    # The right key: models listed, predictions work, and the snippets name the key without showing it.
    by_id(page, "api-key").send_keys("right-key", Keys.ENTER)
    wait(page, lambda d: not by_id(d, "model-list").get_attribute("hidden"), "models not listed with the key")
    before = answer_count(page)
    by_id(page, "text-input").send_keys("I loved this film")
    assert top_label(page, before) == "positive"
    curl = by_id(page, "curl").text
    assert "right-key" not in curl and "$MODELSERVE_API_KEY" in curl
    out = run_snippet(page, "curl", Path.cwd(), env={"MODELSERVE_API_KEY": "right-key"})
    assert json.loads(out)["predictions"][0]["label"] == "positive"


def test_loads_nothing_from_elsewhere_and_logs_no_errors(page: WebDriver, server: Server) -> None:
    page.get_log("browser")  # drop what earlier tests logged
    open_page(page, server.url, image_model())
    choose(page, text_model())
    choose(page, image_model())
    urls: list[str] = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls, "the page loaded no scripts or styles?"
    elsewhere = [u for u in urls if not u.startswith(server.url + "/")]
    assert not elsewhere, elsewhere
    assert not severe_console_messages(page)  # CSP violations and script errors show here


def test_keyboard_only(page: WebDriver, server: Server) -> None:
    open_page(page, server.url, image_model())
    radio = by_id(page, f"model-{image_model()}")
    radio.send_keys(Keys.SPACE)  # focus it as Tab would, then move with the arrows
    for _ in range(len(page.find_elements(By.CSS_SELECTOR, ".model"))):
        if by_id(page, "try-title").text == f"Try {text_model()}":
            break
        page.switch_to.active_element.send_keys(Keys.ARROW_DOWN)
    assert by_id(page, "try-title").text == f"Try {text_model()}"
    # Every control has an accessible name.
    unnamed = page.execute_script(
        """return [...document.querySelectorAll('input:not([type=radio]), select, textarea, button, canvas')]
          .filter(el => !el.hidden && !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                       && !el.textContent.trim()).map(el => el.outerHTML)"""
    )
    assert not unnamed


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_phone_width_light_and_dark(
    chrome: Callable[..., WebDriver], server: Server, screenshot: Shot, scheme: str
) -> None:
    phone = chrome()
    phone.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
    )
    phone.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True})
    phone.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )
    open_page(phone, server.url, image_model())
    canvas = phone.find_element(By.CSS_SELECTOR, "canvas.draw")
    before = answer_count(phone)
    draw(phone, canvas, SEVEN, "touch")
    assert top_label(phone, before) == "7"
    overflow: Any = phone.execute_script("return document.documentElement.scrollWidth - innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone"
    background = phone.execute_script("return getComputedStyle(document.body).backgroundColor")
    dark = sum(int(c) for c in background[background.index("(") + 1 : -1].split(",")[:3]) < 3 * 128
    assert dark == (scheme == "dark"), background
    screenshot(phone, scheme)


def test_the_page_encodes_16_bit_mono_wav(page: WebDriver, server: Server) -> None:
    """wav.js, as the recorder uses it: a 44.1 kHz stereo buffer -> 16 kHz mono -> 16-bit PCM WAV."""
    open_page(page, server.url)
    b64: str = page.execute_async_script(
        """const done = arguments[arguments.length - 1];
        import("/playground/wav.js").then(async ({toMono, encodeWav}) => {
          const rate = 44100, buffer = new AudioBuffer({length: rate / 2, numberOfChannels: 2, sampleRate: rate});
          for (let c = 0; c < 2; c++) {
            const data = buffer.getChannelData(c);
            for (let i = 0; i < data.length; i++) data[i] = 0.5 * Math.sin(2 * Math.PI * 440 * i / rate);
          }
          const wav = encodeWav(await toMono(buffer, 16000), 16000);
          const bytes = new Uint8Array(await wav.arrayBuffer());
          let s = ""; for (const b of bytes) s += String.fromCharCode(b);
          done(btoa(s));
        }).catch((e) => done("error: " + e));"""
    )
    assert not b64.startswith("error"), b64
    with wave.open(io.BytesIO(base64.b64decode(b64))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768
    assert len(samples) == 8000
    # A 440 Hz tone at amplitude 0.5 (mixing two equal channels keeps it): the peak and the pitch survive.
    assert np.abs(samples[100:-100]).max() == pytest.approx(0.5, abs=0.02)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * 16000 / len(samples) == pytest.approx(440, abs=4)


def test_the_page_records_the_microphone_through_webaudio(page: WebDriver, server: Server) -> None:
    """wav.js's recorder on Chromium's fake microphone (a periodic beep): raw samples from the AudioWorklet,
    resampled to 16 kHz mono, as the audio panel sends them."""
    open_page(page, server.url)
    result = page.execute_async_script(
        """const done = arguments[arguments.length - 1];
        import("/playground/wav.js").then(async ({startRecording, toMono, encodeWav}) => {
          const recording = await startRecording();
          await new Promise((r) => setTimeout(r, 1500));
          const buffer = await recording.stop();
          const samples = await toMono(buffer, 16000);
          let peak = 0; for (const x of samples) peak = Math.max(peak, Math.abs(x));
          done({rate: buffer.sampleRate, seconds: buffer.duration, n: samples.length, peak,
                wavBytes: encodeWav(samples, 16000).size});
        }).catch((e) => done({error: String(e)}));"""
    )
    assert "error" not in result, result
    assert 1.2 < result["seconds"] < 3.0, result
    assert result["n"] == pytest.approx(result["seconds"] * 16000, abs=2)
    assert result["wavBytes"] == 44 + 2 * result["n"]
    assert result["peak"] > 0.01, "the fake microphone's beep never arrived"
