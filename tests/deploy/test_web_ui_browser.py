"""The web UI in a real browser (Debian's Chromium driven by Playwright): sign in, chat, see the streamed answer."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import httpx
import pytest

from run_frontend import create_frontend_app
from tests.conftest import RunningServer
from tests.deploy.test_frontend_server import _serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("CI"):
    raise RuntimeError("CI must install chromium (.ci/run does)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (CI installs it)")

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                "--disable-background-networking", "--disable-component-update"]


@pytest.fixture
def page(server: RunningServer) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    for ui in _serve(create_frontend_app(server.base_url)):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            # wait_for_function evaluates strings, which the page's CSP forbids (as it should);
            # test_the_page_signs_in_under_its_content_security_policy runs with the policy on.
            tab = browser.new_page(bypass_csp=True)
            tab.goto(ui)
            yield tab
            browser.close()


def test_wrong_password_shows_the_servers_message(page, server: RunningServer) -> None:  # type: ignore[no-untyped-def]
    page.fill("input[name=username]", server.settings.admin_username)
    page.fill("input[name=password]", "not-the-password")
    page.click("#login-form button[type=submit]")
    page.wait_for_function("document.querySelector('#login-error').textContent.length > 0")
    assert page.is_visible("#login-form")
    assert not page.is_visible("#chat-view")


def test_sign_in_and_chat_streams_an_answer_recorded_in_a_session(page, server: RunningServer) -> None:  # type: ignore[no-untyped-def]
    page.fill("input[name=username]", server.settings.admin_username)
    page.fill("input[name=password]", server.settings.admin_password or "")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#chat-view", state="visible")
    assert not page.is_visible("#login-view")
    assert page.input_value("#model").startswith("SmolLM2")
    options = page.eval_on_selector_all("#model option", "options => options.map(option => option.value)")
    assert "all-MiniLM-L6-v2" not in options and len(options) == 1  # the embedding model cannot chat

    page.fill("#prompt", "What is the capital of France?")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "document.querySelector('.message.assistant')?.textContent.length > 0"
        " && !document.querySelector('#send').disabled",
        timeout=30_000,
    )
    answer = page.inner_text(".message.assistant")
    assert answer.strip()
    assert page.inner_text(".message.user") == "What is the capital of France?"
    assert page.inner_text("#chat-error") == ""

    sessions = httpx.get(f"{server.base_url}/api/sessions", headers=server.headers()).json()
    titles = [session["title"] for session in sessions["data"]]
    assert "What is the capital of France?" in titles


def test_the_page_signs_in_under_its_content_security_policy(server: RunningServer) -> None:
    from playwright.sync_api import sync_playwright

    console: list[str] = []
    for ui in _serve(create_frontend_app(server.base_url)):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            tab = browser.new_page()
            tab.on("console", lambda message: console.append(message.text))
            response = tab.goto(ui)
            assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
            tab.fill("input[name=username]", server.settings.admin_username)
            tab.fill("input[name=password]", server.settings.admin_password or "")
            tab.click("#login-form button[type=submit]")
            tab.wait_for_selector("#chat-view", state="visible")
            browser.close()
    # The policy blocks nothing the page needs (Chromium logs every blocked load or inline script).
    assert [text for text in console if "Content Security Policy" in text] == []
