"""Shared fixtures: a real server (uvicorn on a free loopback port) on the real embedded model."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn

from backend.api.http_protocol import slow_client_protocol
from backend.app import create_app
from backend.config import Settings, load_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    base_url: str
    settings: Settings
    api_key: str
    """A credential accepted on /v1/* (an API key once accounts exist)."""

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


class ServerThread:
    """uvicorn in a background thread, stopped cleanly at teardown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.server_port, log_level="warning", lifespan="on",
            # As run_backend.py: X-Forwarded-For is believed only from FORWARDED_ALLOW_IPS (default loopback).
            proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips,
            http=slow_client_protocol(settings),  # as run_backend.py: slow headers and bodies are timed out
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        base = f"http://127.0.0.1:{self.settings.server_port}"
        while time.monotonic() < deadline:
            if self.server.started:
                return base
            if not self.thread.is_alive():
                raise RuntimeError("server thread died during start-up")
            time.sleep(0.05)
        raise RuntimeError("server did not start within 60 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "server_port": free_port(),
        "llm_backend": "llamacpp",
        "llamacpp_n_ctx": 2048,
        "log_level": "WARNING",
        "admin_password": "test-admin-password-123",
        # Rate limiting has its own tests; a shared server must not throttle the rest of the suite.
        "rate_limit_rpm": 0,
    }
    values.update(overrides)
    # Likewise the per-user share of the model: the whole queue (tests/api/test_model_limits_attacks.py tests it).
    values.setdefault("llamacpp_max_queue_per_user", values.get("llamacpp_max_queue", 32))
    return load_settings(**values)


def credential_for(base_url: str, settings: Settings) -> str:
    """A bearer credential for /v1/*: the admin's API key where accounts exist."""
    response = httpx.post(
        f"{base_url}/api/auth/login",
        json={"username": settings.admin_username, "password": settings.admin_password},
        timeout=30,
    )
    if response.status_code == 404:  # no accounts in this build
        return "unused"
    response.raise_for_status()
    token = response.json()["access_token"]
    created = httpx.post(
        f"{base_url}/api/auth/api-keys", json={"name": "tests"},
        headers={"Authorization": f"Bearer {token}"}, timeout=30,
    )
    created.raise_for_status()
    return str(created.json()["key"])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server on the embedded SmolLM2 for the whole session."""
    settings = make_settings(tmp_path_factory.mktemp("data"))
    with ServerThread(settings) as base_url:
        yield RunningServer(base_url=base_url, settings=settings, api_key=credential_for(base_url, settings))


@pytest.fixture(scope="session")
def model_id(server: RunningServer) -> str:
    response = httpx.get(f"{server.v1}/models", headers=server.headers(), timeout=30)
    response.raise_for_status()
    return str(response.json()["data"][0]["id"])


@pytest.fixture
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    """The official OpenAI SDK pointed at the server, retries off so every status is seen as sent."""
    with openai.OpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0, timeout=60) as sdk:
        yield sdk
