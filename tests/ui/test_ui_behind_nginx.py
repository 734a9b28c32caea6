"""The web UI as docker-compose deploys it: the shipped nginx.conf in a real nginx serves frontend/ and proxies
the API; Chromium signs in, streams an answer and uploads a file, with nginx's headers and no CSP complaint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from backend.api.security_headers import PAGE_CSP
from tests.deploy.test_nginx import NGINX, _nginx
from tests.ui.conftest import DESKTOP, UI, csp_reports, send, set_max_tokens, shot, sign_in, wait_for_answer

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (CI installs it)")


@pytest.fixture(scope="module")
def behind_nginx(ui: UI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    """The same API server as the other browser tests, reached through nginx instead of run_frontend.py."""
    with _nginx(ui.server.base_url.removeprefix("http://"), tmp_path_factory.mktemp("nginx")) as base:
        yield UI(url=base, server=ui.server)


@pytest.fixture
def nginx_page(browser: Any, behind_nginx: UI) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    console: list[str] = []
    tab.on("console", lambda message: console.append(message.text))
    tab.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    tab.console = console
    tab.goto(behind_nginx.url)
    yield tab
    shot(tab, "behind-nginx-end")
    context.close()


def test_behind_nginx_the_page_signs_in_streams_and_uploads(nginx_page: Any, behind_nginx: UI, tmp_path: Path) -> None:
    page = httpx.get(f"{behind_nginx.url}/")
    assert page.headers.get_list("content-security-policy") == [PAGE_CSP]
    assert page.headers["x-content-type-options"] == "nosniff"
    for module in ("app.js", "chat.js", "vendor/purify.es.js", "vendor/marked.esm.js"):
        served = httpx.get(f"{behind_nginx.url}/{module}")
        assert served.status_code == 200 and "javascript" in served.headers["content-type"], module

    sign_in(nginx_page, behind_nginx)
    set_max_tokens(nginx_page, 24)
    nginx_page.select_option("#mode", "chat")
    send(nginx_page, "Say hello to the world.")
    answer = wait_for_answer(nginx_page)
    assert answer.strip()
    session_id = str(nginx_page.evaluate("() => localStorage.getItem('openSession')"))
    stored = behind_nginx.session(session_id)
    assert stored["messages"][-1]["role"] == "assistant"
    assert answer.strip() in stored["messages"][-1]["content"]

    notes = tmp_path / "nginx-notes.txt"
    notes.write_text("Behind nginx the upload limit is 25 MB.\n")
    nginx_page.click("nav .nav[data-panel='documents']")
    nginx_page.set_input_files("#file-input", str(notes))
    row = nginx_page.locator("#document-rows tr", has_text="nginx-notes.txt")
    expect(row).to_be_visible(timeout=60_000)
    expect(nginx_page.locator("#upload-percent")).to_have_text("Done")
    shot(nginx_page, "behind-nginx-documents")
    assert csp_reports(nginx_page) == []
