"""run_backend.py: X-Forwarded-For names the client only on connections from FORWARDED_ALLOW_IPS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def _run_backend(folder: Path, dotenv: str) -> Iterator[str]:
    """`python run_backend.py` started in `folder`, whose `.env` holds `dotenv`.

    The setting goes through `.env`, which only our settings read: uvicorn also reads
    FORWARDED_ALLOW_IPS from the environment itself, which would hide whether run_backend passes it on.
    """
    folder.mkdir()
    (folder / ".env").write_text(dotenv)
    port = free_port()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SERVER_", "LLM_", "DATA_DIR", "LOGIN_", "FORWARDED_"))}
    env.update(LLM_BACKEND="llamacpp", DATA_DIR=str(folder / "data"), ADMIN_PASSWORD="another-test-password",
               LOGIN_MAX_FAILURES_PER_ADDRESS="2", LOGIN_MAX_FAILURES_PER_USERNAME="100")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run_backend.py"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None:
                    pytest.fail(f"run_backend.py exited: {process.communicate()[0]}")
                time.sleep(0.1)
        else:
            pytest.fail("run_backend.py did not answer within 60 s")
        yield base
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _failed_logins_claiming_addresses(base: str, count: int) -> list[int]:
    return [
        httpx.post(f"{base}/api/auth/login", json={"username": f"guess-{index}", "password": "nope"},
                   headers={"X-Forwarded-For": f"203.0.113.{index}"}, timeout=30).status_code
        for index in range(count)
    ]


def test_x_forwarded_for_from_an_address_not_in_forwarded_allow_ips_is_ignored(tmp_path: Path) -> None:
    with _run_backend(tmp_path / "untrusted", "FORWARDED_ALLOW_IPS=192.0.2.1\n") as base:
        # Loopback is not a trusted proxy here: every guess counts against 127.0.0.1, whatever it claims.
        assert _failed_logins_claiming_addresses(base, 3) == [401, 401, 429]


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    with _run_backend(tmp_path / "trusted", "FORWARDED_ALLOW_IPS=127.0.0.1\n") as base:
        # A trusted proxy (here: loopback) speaks for its clients: three addresses, one failure each.
        assert _failed_logins_claiming_addresses(base, 3) == [401, 401, 401]
