"""The shipped nginx.conf, run by a real nginx in front of a real API server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from backend.api.security_headers import API_CSP, PAGE_CSP
from tests.conftest import RunningServer, free_port

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

if NGINX is None and os.environ.get("CI"):
    raise RuntimeError("CI must install nginx (.ci/run does)")
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (CI installs it)")


@contextmanager
def _nginx(upstream: str, folder: Path, settings: dict[str, str] | None = None) -> Iterator[str]:
    """The shipped nginx.conf on a free loopback port, proxying to `upstream` (host:port).

    `settings` replaces whole directives (e.g. a shorter client_header_timeout), each of which must exist.
    """
    port = free_port()
    config = (ROOT / "nginx.conf").read_text()
    for old, new in [
        ("server backend:8000;", f"server {upstream};"),
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("root /usr/share/nginx/html;", f"root {ROOT / 'frontend'};"),
        ("pid /tmp/nginx.pid;", f"pid {folder / 'nginx.pid'};"),
        *(settings or {}).items(),
    ]:
        assert old in config
        config = config.replace(old, new)
    (folder / "nginx.conf").write_text(config)
    process = subprocess.Popen(
        [str(NGINX), "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(folder / "nginx.conf"),
         "-g", "daemon off; user root;" if os.geteuid() == 0 else "daemon off;"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/metrics", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def nginx(server: RunningServer, tmp_path: Path) -> Iterator[str]:
    with _nginx(server.base_url.removeprefix("http://"), tmp_path) as base:
        yield base


class _Echo(BaseHTTPRequestHandler):
    """An upstream that answers with what nginx sent it: the headers and the size of the body."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        answer = json.dumps({"headers": dict(self.headers.items()), "body_bytes": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def nginx_to_echo(echo_upstream: str, tmp_path: Path) -> Iterator[str]:
    with _nginx(echo_upstream, tmp_path, {"client_header_timeout 10s;": "client_header_timeout 1s;"}) as base:
        yield base


def test_nginx_serves_the_ui_and_hides_metrics(nginx: str) -> None:
    assert "Sign in" in httpx.get(f"{nginx}/").text
    assert httpx.get(f"{nginx}/metrics").status_code == 404
    assert httpx.get(f"{nginx}/health").json() == {"status": "ok"}


def test_nginx_streams_sse_event_by_event(nginx: str, server: RunningServer, model_id: str) -> None:
    body = {"model": model_id, "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 40,
            "stream": True, "temperature": 0}
    arrivals: list[float] = []
    with httpx.stream("POST", f"{nginx}/v1/chat/completions", json=body, headers=server.headers(), timeout=60) as r:
        assert r.status_code == 200
        events = []
        for line in r.iter_lines():
            if line:
                events.append(line)
                arrivals.append(time.monotonic())
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0].removeprefix("data: "))["object"] == "chat.completion.chunk"
    # Unbuffered: the events arrive spread over the generation, not in one burst at the end.
    assert arrivals[-1] - arrivals[0] > 0.05


def _raw_head(base: str, request: bytes) -> str:
    """Send a request head only (no body) and return what nginx answers first."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(65536).decode("latin-1")


def test_nginx_sets_x_forwarded_for_to_the_clients_own_address(nginx_to_echo: str) -> None:
    # The API server trusts this proxy's X-Forwarded-For: a client must not be able to choose its address.
    seen = httpx.post(f"{nginx_to_echo}/api/auth/login", json={}, timeout=10,
                      headers={"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9"}).json()
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("path", "content_type", "declared_mb", "setting"),
    [("/v1/chat/completions", "application/json", 5, "MAX_REQUEST_MB"),
     ("/api/files/upload", "multipart/form-data; boundary=x", 26, "MAX_UPLOAD_MB")],
)
def test_nginx_refuses_a_body_over_the_limit_at_once_in_the_error_shape(
    nginx_to_echo: str, path: str, content_type: str, declared_mb: int, setting: str
) -> None:
    started = time.monotonic()
    answer = _raw_head(nginx_to_echo, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                                      f"Content-Length: {declared_mb * 1024 * 1024}\r\n\r\n".encode())
    assert time.monotonic() - started < 1
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413 ")
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "request_too_large" and setting in error["message"]
    assert "x-content-type-options: nosniff" in head.lower() and "x-frame-options: deny" in head.lower()


def test_nginx_forwards_bodies_within_the_limits(nginx_to_echo: str) -> None:
    json_body = httpx.post(f"{nginx_to_echo}/v1/chat/completions", content=b"x" * (3 * 1024 * 1024), timeout=30)
    assert json_body.json()["body_bytes"] == 3 * 1024 * 1024
    upload = httpx.post(f"{nginx_to_echo}/api/files/upload", content=b"x" * (10 * 1024 * 1024), timeout=30,
                        headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert upload.json()["body_bytes"] == 10 * 1024 * 1024


def test_nginx_closes_a_connection_whose_headers_never_finish(nginx_to_echo: str) -> None:
    host, port = nginx_to_echo.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        while sock.recv(65536):  # nginx may answer 408 first; then it closes
            pass
    assert time.monotonic() - started < 3


def test_nginx_adds_each_security_header_once(nginx: str) -> None:
    page, api, hidden = httpx.get(f"{nginx}/"), httpx.get(f"{nginx}/health"), httpx.get(f"{nginx}/metrics")
    assert page.headers.get_list("content-security-policy") == [PAGE_CSP]
    # The API server's own, stricter policy, not a second one from nginx.
    assert api.headers.get_list("content-security-policy") == [API_CSP]
    for response in (page, api, hidden):
        assert response.headers.get_list("x-content-type-options") == ["nosniff"]
        assert response.headers.get_list("x-frame-options") == ["DENY"]
        assert response.headers.get_list("referrer-policy") == ["no-referrer"]
