"""The shipped nginx.conf, run by a real nginx in front of a real API server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, free_port

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

if NGINX is None and os.environ.get("CI"):
    raise RuntimeError("CI must install nginx (.ci/run does)")
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (CI installs it)")


@pytest.fixture
def nginx(server: RunningServer, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    backend = server.base_url.removeprefix("http://")
    config = (ROOT / "nginx.conf").read_text()
    for old, new in [
        ("server backend:8000;", f"server {backend};"),
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("root /usr/share/nginx/html;", f"root {ROOT / 'frontend'};"),
        ("pid /tmp/nginx.pid;", f"pid {tmp_path / 'nginx.pid'};"),
    ]:
        assert old in config
        config = config.replace(old, new)
    (tmp_path / "nginx.conf").write_text(config)
    process = subprocess.Popen(
        [str(NGINX), "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf"),
         "-g", "daemon off; user root;" if os.geteuid() == 0 else "daemon off;"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


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
