"""The playground's tabular panel in headless Chromium, against the shipped tabular model: a form generated
from the model's feature list, the server's notes and errors, the snippets that reproduce it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from tests.browser.page import answer_count, by_id, open_page, run_snippet, top_label, wait
from tests.conftest import Server

Shot = Callable[[WebDriver, str], Path]


@pytest.fixture(scope="module")
def page(chrome: Callable[..., WebDriver]) -> WebDriver:
    return chrome()


def served(server: Server, kind: str) -> dict[str, Any]:
    """The first shipped model of this input kind (the repository ships at least one of each)."""
    models = [m for m in httpx.get(f"{server.url}/models").json()["models"] if m["input_kind"] == kind]
    assert models, f"no {kind} model is served from models/"
    return models[0]


def test_tabular_form_from_the_feature_list(page: WebDriver, server: Server, screenshot: Shot) -> None:
    model = served(server, "tabular")
    features = model["features"]
    open_page(page, server.url, model["name"])  # a fresh page: no answer yet
    # One labelled control per feature; the starting row answers at once.
    for i, f in enumerate(features):
        control = by_id(page, f"feature-{i}")
        assert page.find_element(By.CSS_SELECTOR, f"label[for='feature-{i}']").text == f["name"]
        assert control.tag_name == ("select" if f["type"] == "categorical" else "input")
    first = top_label(page, 0)
    assert first in model["labels"]
    # The curl and the Python (httpx) snippets reproduce the page's request.
    curl = json.loads(run_snippet(page, "curl", Path.cwd()))
    assert curl["predictions"][0]["label"] == first
    assert run_snippet(page, "python", Path.cwd()).split()[0] == first
    # A value past the training range is answered, with the server's note beside it.
    numeric = next(i for i, f in enumerate(features) if f["type"] == "numeric" and f.get("max") is not None)
    f = features[numeric]
    before = answer_count(page)
    box = by_id(page, f"feature-{numeric}")
    box.clear()
    box.send_keys(str(f["max"] * 10 + 100))
    top_label(page, before)
    wait(page, lambda d: d.find_elements(By.ID, "tabular-notes"), "no out-of-range note")
    assert f["name"] in by_id(page, "tabular-notes").text
    categorical = [i for i, f in enumerate(features) if f["type"] == "categorical"]
    if categorical:
        before = answer_count(page)
        Select(by_id(page, f"feature-{categorical[0]}")).select_by_index(1)
        top_label(page, before)
    screenshot(page, "tabular")
    # A required value left empty: the server's 422, as it wrote it.
    required = next(i for i, f in enumerate(features) if f["type"] == "numeric" and f.get("required", True))
    before = answer_count(page)
    by_id(page, f"feature-{required}").clear()
    wait(page, lambda d: answer_count(d) > before, "no answer")
    wait(page, lambda d: not by_id(d, "answer-error").get_attribute("hidden"), "no error shown")
    assert features[required]["name"] in by_id(page, "answer-error").text
    assert "422" in by_id(page, "answer-status").text
