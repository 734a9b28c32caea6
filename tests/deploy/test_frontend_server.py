"""run_frontend.py: serves the UI and forwards API calls (streams included) to the API server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from backend.api.security_headers import API_CSP, PAGE_CSP
from run_frontend import SERVER_OPTIONS, create_frontend_app
from tests.conftest import RunningServer, ServerThread, free_port, make_settings


def _serve(app: object) -> Iterator[str]:
    """The UI server as `run_frontend.py` runs it."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **SERVER_OPTIONS)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def ui(server: RunningServer) -> Iterator[str]:
    yield from _serve(create_frontend_app(server.base_url))


def test_serves_the_ui(ui: str) -> None:
    page = httpx.get(f"{ui}/")
    assert page.status_code == 200 and "Sign in" in page.text
    assert '<script type="module" src="app.js">' in page.text
    script = httpx.get(f"{ui}/chat.js")
    assert script.status_code == 200 and "chat/completions" in script.text
    assert script.headers["content-type"].startswith("text/javascript")


def test_page_files_named_like_an_api_prefix_are_served_not_forwarded(tmp_path: Path) -> None:
    """`/api.js` is the page's file; `/api` and `/api/...` go to the API server (here: none, so 502)."""
    for prefix in ("api", "v1", "health", "ready"):
        (tmp_path / f"{prefix}.js").write_text(f"// {prefix}")
    for served in _serve(create_frontend_app("http://127.0.0.1:9", frontend_dir=tmp_path)):
        for prefix in ("api", "v1", "health", "ready"):
            page_file = httpx.get(f"{served}/{prefix}.js")
            assert (page_file.status_code, page_file.text) == (200, f"// {prefix}")
            forwarded = httpx.get(f"{served}/{prefix}/anything")
            assert forwarded.status_code == 502
            assert forwarded.json()["error"]["code"] == "backend_unreachable"
        assert httpx.get(f"{served}/health").status_code == 502


def test_forwards_streamed_chat_intact(ui: str, server: RunningServer, model_id: str) -> None:
    body = {"model": model_id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "stream": True}
    with httpx.stream("POST", f"{ui}/v1/chat/completions", json=body, headers=server.headers(), timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_forwards_errors_with_their_status(ui: str, server: RunningServer) -> None:
    response = httpx.post(f"{ui}/v1/chat/completions", headers=server.headers(),
                          json={"model": "absent", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_unreachable_api_server_is_a_502_in_the_error_shape() -> None:
    for base in _serve(create_frontend_app(f"http://127.0.0.1:{free_port()}")):
        response = httpx.get(f"{base}/v1/models")
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "backend_unreachable"


def test_a_spoofed_x_forwarded_for_does_not_reach_the_api_server_as_the_client_address(tmp_path: Path) -> None:
    # The API server trusts X-Forwarded-For from loopback, where the UI server is: whatever address a
    # caller claims must be replaced by its real one, or it could dodge the per-address sign-in limit.
    settings = make_settings(tmp_path, login_max_failures_per_address=3, login_max_failures_per_username=100)
    with ServerThread(settings) as api:
        for ui in _serve(create_frontend_app(api)):
            for index in range(3):
                wrong = httpx.post(f"{ui}/api/auth/login", json={"username": f"guess-{index}", "password": "nope"},
                                   headers={"X-Forwarded-For": f"203.0.113.{index}"}, timeout=30)
                assert wrong.status_code == 401, wrong.text
            another_claim = httpx.post(f"{ui}/api/auth/login", json={"username": "guess-9", "password": "nope"},
                                       headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.99"}, timeout=30)
            assert another_claim.status_code == 429, another_claim.text
            assert another_claim.json()["error"]["code"] == "too_many_login_attempts"


def test_the_page_and_forwarded_api_answers_carry_security_headers(ui: str) -> None:
    page = httpx.get(f"{ui}/")
    assert page.headers["content-security-policy"] == PAGE_CSP
    assert "'unsafe-inline'" not in PAGE_CSP  # the page has no inline scripts or styles
    api = httpx.get(f"{ui}/health")
    # The API server's own, stricter policy comes through once, not the page's.
    assert api.headers.get_list("content-security-policy") == [API_CSP]
    for response in (page, api, httpx.get(f"{ui}/no-such-file.js")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"


def test_the_ui_server_refuses_a_huge_body_before_reading_it(ui: str) -> None:
    # It reads a body whole before forwarding it, so it bounds it as the API server does.
    host, port = ui.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 314572800\r\n\r\n")
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413 ")
    assert '"code":"request_too_large"' in answer
