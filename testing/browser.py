"""Browser tests: Playwright's Python package driving Debian's Chromium against the live ASGI server.

Fixtures (loaded from the root conftest.py):

- ``browser``: a headless Chromium (``/usr/bin/chromium``, or ``PENDRA_CHROMIUM``). Missing, it
  skips the test on a laptop and fails it under ``CI=true`` (``.ci/run`` installs it).
- ``page``: a fresh browser context and page at 1440 x 900 against the ``live`` server, with
  ``page.base_url`` set; every request the page makes is recorded (``page.origins``) and any
  request to another origin fails the test at teardown, as does an error in the page's console
  (a CSP refusal is one).

Helpers for the tests: :func:`sign_in`, :func:`screenshot` (both widths, under
``var/screenshots/``, or ``docs/screenshots/`` under ``make screenshots``) and
:func:`assert_same_origin` (call it mid-test for a clearer failure).

Playwright's sync API runs an event loop in this thread while a browser is open, so Django,
seeing a running loop, would refuse database calls from the test itself; the ``browser``
fixture allows them (``DJANGO_ALLOW_ASYNC_UNSAFE``) for the test's duration only. The browser is
per test for the same reason: the loop, and that allowance, end with it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from testing.live import LiveServer
from testing.require import require_service

CHROMIUM = os.environ.get("PENDRA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The README's screenshots are rewritten only on request (make screenshots); an ordinary test run
# keeps its own under var/, so it leaves the checkout as it found it.
SCREENSHOT_DIR = Path(__file__).resolve().parent.parent / (
    "docs/screenshots" if os.environ.get("PENDRA_UPDATE_SCREENSHOTS") == "1" else "var/screenshots"
)
WIDTHS = {"1440": (1440, 900), "375": (375, 812)}
# Schemes a page may use without reaching any server.
_LOCAL_SCHEMES = {"data", "blob", "about"}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme in _LOCAL_SCHEMES:
        return parts.scheme + ":"
    return f"{parts.scheme}://{parts.netloc}"


class PageRecorder:
    """Every URL the page requested and every console error it logged."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.base_origin = _origin(base_url)
        self.requests: list[str] = []
        self.documents: set[str] = set()
        self.console_errors: list[str] = []
        page.on("request", self._request)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.console_errors.append(f"uncaught: {error}"))

    def _request(self, request: Any) -> None:
        self.requests.append(request.url)
        if request.is_navigation_request():
            self.documents.add(request.url)

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        # Chromium logs a page answered with 403/404 as a failed load; that page is what a
        # permission test asks for. A failed script, stylesheet or image is still an error.
        if message.text.startswith("Failed to load resource") and message.location.get("url") in self.documents:
            return
        self.console_errors.append(message.text)

    def foreign_requests(self) -> list[str]:
        return [
            url for url in self.requests if _origin(url) not in {self.base_origin, *(s + ":" for s in _LOCAL_SCHEMES)}
        ]


def assert_same_origin(page: Any) -> None:
    """The page loaded nothing from another origin (no CDN, no fonts, no trackers) and logged no error."""
    recorder: PageRecorder = page.recorder
    assert recorder.requests, "the page recorded no request at all; is the recorder attached?"
    assert recorder.foreign_requests() == [], f"requests to other origins: {recorder.foreign_requests()}"
    assert recorder.console_errors == [], f"errors in the page's console: {recorder.console_errors}"


def sign_in(page: Any, email: str, password: str) -> None:
    """Through the sign-in form, as a person would; returns once the next page has loaded."""
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def sign_out(page: Any) -> None:
    """Through the user menu's POST form."""
    page.locator(".user-menu summary").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()


def screenshot(page: Any, name: str) -> list[Path]:
    """Full-page screenshots at 1440 px and 375 px: ``<SCREENSHOT_DIR>/<name>-1440.png`` and ``-375.png``.

    The viewport is restored afterwards, so a test can go on where it was.
    """
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    saved = []
    try:
        for suffix, (width, height) in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": height})
            path = SCREENSHOT_DIR / f"{name}-{suffix}.png"
            page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
            saved.append(path)
    finally:
        if original:
            page.set_viewport_size(original)
    return saved


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    require_service(Path(CHROMIUM).exists(), f"chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(live: LiveServer, browser: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=live.url, viewport={"width": 1440, "height": 900}, locale="en-GB")
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.base_url = live.url
    page.recorder = PageRecorder(page, live.url)
    yield page
    foreign = page.recorder.foreign_requests()
    errors = list(page.recorder.console_errors)
    context.close()
    assert foreign == [], f"the page requested other origins: {foreign}"
    assert errors == [], f"errors in the page's console: {errors}"
