"""Driving the playground page: open it, pick a model, draw, wait for the answer, run its curl."""

from __future__ import annotations

import itertools
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import ROOT

WAIT_S = 20

# Digits as one stroke each, in fractions of the canvas half-size from its centre (y down).
SEVEN = [(-0.5, -0.6), (0.5, -0.6), (-0.1, 0.68)]  # the top bar left to right, then down
DIGITS = {
    "0": [(0.45 * math.cos(t * math.pi / 10), -0.6 * math.sin(t * math.pi / 10)) for t in range(21)],
    "1": [(0.05, -0.65), (0.0, 0.65)],
    "2": [(-0.4, -0.4), (-0.2, -0.6), (0.2, -0.6), (0.4, -0.35), (0.3, -0.05), (-0.45, 0.6), (0.5, 0.6)],
    "3": [(-0.4, -0.55), (0.3, -0.6), (0.35, -0.25), (-0.1, -0.02), (0.4, 0.2), (0.3, 0.55), (-0.4, 0.6)],
    "7": SEVEN,
}


def wait(driver: WebDriver, condition: Any, message: str, timeout: float = WAIT_S) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, message)


def by_id(driver: WebDriver, element_id: str) -> WebElement:
    return driver.find_element(By.ID, element_id)


def open_page(driver: WebDriver, url: str, model: str | None = None) -> None:
    driver.get("about:blank")  # a fresh document: same-page hash changes would keep the old state
    driver.get(f"{url}/" + (f"#{model}" if model else ""))
    wait(
        driver,
        lambda d: (
            not by_id(d, "model-list").get_attribute("hidden")
            or not by_id(d, "key-panel").get_attribute("hidden")
        ),
        "the page listed no models and asked for no key",
    )


def choose(driver: WebDriver, model: str) -> None:
    by_id(driver, f"model-{model}").click()  # the radio button lies over its card
    wait(driver, lambda d: by_id(d, "try-title").text == f"Try {model}", f"{model} was not chosen")


def answer_count(driver: WebDriver) -> int:
    return int(by_id(driver, "answer").get_attribute("data-count") or 0)


def top_label(driver: WebDriver, after: int = -1) -> str:
    """The best label of the next answer (or error) shown after `after` answers."""

    def shown(d: WebDriver) -> str | bool:
        if after >= 0 and answer_count(d) <= after:
            return False
        error = by_id(d, "answer-error")
        if not error.get_attribute("hidden"):
            raise AssertionError(f"the page shows an error: {error.text}")
        if by_id(d, "answer").get_attribute("aria-busy"):
            return False
        labels = d.find_elements(By.CSS_SELECTOR, "#answer-status .top-label")
        return labels[0].get_attribute("data-label") if labels else False

    return str(wait(driver, shown, "no answer appeared"))


def draw(driver: WebDriver, canvas: WebElement, strokes: list[tuple[float, float]], kind: str) -> None:
    """One stroke through the points (fractions of the half-size from the centre), as a mouse, pen or
    touch pointer: real pointer events in the page."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    half = canvas.rect["width"] / 2
    strokes = [(x * half, y * half) for x, y in strokes]
    pointer = PointerInput(
        {
            "mouse": interaction.POINTER_MOUSE,
            "pen": interaction.POINTER_PEN,
            "touch": interaction.POINTER_TOUCH,
        }[kind],
        kind,
    )
    actions = ActionBuilder(driver, mouse=pointer, duration=10)
    pa = actions.pointer_action
    pa.move_to(canvas, int(strokes[0][0]), int(strokes[0][1]))
    pa.pointer_down(pressure=0.5)
    for (x0, y0), (x1, y1) in itertools.pairwise(strokes):
        steps = max(2, int(max(abs(x1 - x0), abs(y1 - y0)) // 8))
        for i in range(1, steps + 1):
            t = i / steps
            pa.move_to(canvas, int(x0 + (x1 - x0) * t), int(y0 + (y1 - y0) * t), pressure=0.5)
    pa.pointer_up()
    actions.perform()


def run_snippet(driver: WebDriver, element_id: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run the page's curl (bash) or Python snippet as a user would paste it; its stdout."""
    text = by_id(driver, element_id).text
    command = ["bash", "-c", text] if element_id == "curl" else [sys.executable, "-c", text]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    out = subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{shlex.join(command)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def severe_console_messages(driver: WebDriver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
