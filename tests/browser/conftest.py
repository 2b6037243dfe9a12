"""A real headless Chromium (Debian's chromium + chromium-driver, through Selenium) against a real server.

No browser is downloaded: `make test` installs Debian's packages (Makefile: browser-deps). Where they are
missing these tests FAIL with a message saying so; they never skip, so a green run means a browser ran.
Screenshots go to test-artifacts/browser/ (every test's last state; CI keeps the folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("MODELSERVE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MODELSERVE_CHROMEDRIVER", "/usr/bin/chromedriver")
# The flags a closed network needs: nothing phones home, nothing waits on a lookup that cannot answer.
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--use-fake-ui-for-media-stream",  # grant the microphone without a prompt...
    "--use-fake-device-for-media-stream",  # ...and make it a test tone, not a real device
    "--window-size=1280,1000",
)


def _missing_browser() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    if missing:
        return (
            f"\n\n{'!' * 100}\nBROWSER TESTS CANNOT RUN: {', '.join(missing)} not found.\n"
            "Install Debian's chromium and chromium-driver (`make browser-deps`, as root), or point "
            "MODELSERVE_CHROMIUM / MODELSERVE_CHROMEDRIVER at them. These tests fail rather than skip.\n"
            f"{'!' * 100}\n"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "BROWSER TESTS CANNOT RUN: the selenium package is missing (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="session")
def chrome() -> Iterator[Callable[..., object]]:
    """A factory of fresh headless Chromium sessions (each with its own empty profile), all quit at the end."""
    problem = _missing_browser()
    if problem:
        pytest.fail(problem, pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try to fetch a driver
    drivers = []
    profiles = []

    def start(*extra: str) -> webdriver.Chrome:
        profile = tempfile.mkdtemp(prefix="modelserve-chromium-")
        profiles.append(profile)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={profile}", *extra):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(30)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Iterator[Callable[[object, str], Path]]:
    """screenshot(driver, "name"): save test-artifacts/browser/<test>-<name>.png; returns the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(driver: object, name: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        driver.save_screenshot(str(path))  # type: ignore[attr-defined]
        return path

    yield take
