"""run_frontend.py: serves the UI and forwards API calls (streams included) to the API server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from run_frontend import create_frontend_app
from tests.conftest import RunningServer, free_port


def _serve(app: object) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
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
    script = httpx.get(f"{ui}/app.js")
    assert script.status_code == 200 and "chat/completions" in script.text


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
