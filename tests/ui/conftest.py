"""The web UI in a real browser: one API server and one UI server (run_frontend.py's app) per module, one
Debian Chromium per module driven by Playwright, a fresh browser context (storage, cookies) per test.
Screenshots of the screens go to tests/artifacts/ (git-ignored) on every run."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from run_frontend import create_frontend_app
from tests.conftest import RunningServer, ServerThread, credential_for, make_settings
from tests.deploy.test_frontend_server import _serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI"):
    raise RuntimeError("CI must install chromium (.ci/run does); the browser tests never skip there")

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                "--disable-extensions", "--metrics-recording-only", "--no-default-browser-check"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DESKTOP = {"width": 1280, "height": 800}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM is None:
        skip = pytest.mark.skip(reason="chromium is not installed (CI installs it and never skips)")
        for item in items:
            if "tests/ui/" in str(item.path).replace(os.sep, "/"):
                item.add_marker(skip)


@dataclass
class UI:
    """The running pair: the page's address, the API server behind it, and an admin credential."""

    url: str
    server: RunningServer

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.server.base_url}{path}", headers=self.server.headers(),
                             timeout=120, **kwargs)

    def session(self, session_id: str) -> dict[str, Any]:
        """The stored session; it is written just after its stream ends, so a 404 is asked again briefly."""
        deadline = time.monotonic() + 10
        response = self.api("GET", f"/api/sessions/{session_id}")
        while response.status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.2)
            response = self.api("GET", f"/api/sessions/{session_id}")
        response.raise_for_status()
        return dict(response.json())

    def sessions(self) -> list[dict[str, Any]]:
        response = self.api("GET", "/api/sessions", params={"limit": 200})
        response.raise_for_status()
        return list(response.json()["data"])


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    settings = make_settings(tmp_path_factory.mktemp("ui-data"))
    with ServerThread(settings) as base_url:
        server = RunningServer(base_url=base_url, settings=settings, api_key=credential_for(base_url, settings))
        for url in _serve(create_frontend_app(base_url, settings.max_request_mb, settings.max_upload_mb)):
            yield UI(url=url, server=server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, ui: UI, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A tab on the UI with the page's real CSP; `page.console` collects what the console says."""
    context = browser.new_context(viewport=DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ui.url)
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    console: list[str] = []
    tab.on("console", lambda message: console.append(message.text))
    tab.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    tab.console = console
    tab.goto(ui.url)
    yield tab
    shot(tab, f"{request.node.name}-end")
    context.close()


def shot(page: Any, name: str, path: Path | None = None) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(path or ARTIFACTS / f"{name}.png"))


def sign_in(page: Any, ui: UI) -> None:
    from playwright.sync_api import expect

    page.fill("#login-form input[name=username]", ui.server.settings.admin_username)
    page.fill("#login-form input[name=password]", ui.server.settings.admin_password or "")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#app-view")).to_be_visible()
    expect(page.locator("#model option")).not_to_have_count(0)


def set_max_tokens(page: Any, value: int) -> None:
    page.fill("#max-tokens", str(value))
    page.dispatch_event("#max-tokens", "change")


def send(page: Any, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def wait_for_answer(page: Any, timeout_ms: int = 120_000) -> str:
    """Waits until the answer in progress has ended (the Send button is back) and returns its text."""
    from playwright.sync_api import expect

    expect(page.locator("#send")).to_be_visible(timeout=timeout_ms)
    expect(page.locator(".message.assistant.pending")).to_have_count(0)
    return str(page.locator(".message.assistant .content").last.inner_text())


def csp_reports(page: Any) -> list[str]:
    return [text for text in page.console if "Content Security Policy" in text or text.startswith("pageerror")]
