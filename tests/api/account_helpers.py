"""Helpers for API tests that need accounts: sign in, create users, craft tokens with the server's key."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import RunningServer

ERROR_KEYS = {"message", "type", "param", "code"}
PASSWORD = "a-decent-password-1"


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def login(base_url: str, username: str, password: str) -> str:
    response = httpx.post(f"{base_url}/api/auth/login", json={"username": username, "password": password}, timeout=30)
    response.raise_for_status()
    return str(response.json()["access_token"])


def admin_token(server: RunningServer) -> str:
    assert server.settings.admin_password
    return login(server.base_url, server.settings.admin_username, server.settings.admin_password)


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_user(server: RunningServer, token: str, role: str = "user", username: str | None = None) -> str:
    """Create an account through the admin API; returns its username (password: PASSWORD)."""
    name = username or unique_name(role)
    response = httpx.post(
        f"{server.base_url}/api/admin/users", json={"username": name, "password": PASSWORD, "role": role},
        headers=bearer(token), timeout=30,
    )
    assert response.status_code == 201, response.text
    return name


def new_user_token(server: RunningServer, admin: str, role: str = "user") -> tuple[str, str]:
    name = create_user(server, admin, role)
    return name, login(server.base_url, name, PASSWORD)


def create_api_key(server: RunningServer, token: str, name: str = "sdk") -> dict[str, Any]:
    response = httpx.post(
        f"{server.base_url}/api/auth/api-keys", json={"name": name}, headers=bearer(token), timeout=30
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def secret_key_of(server: RunningServer) -> str:
    return (server.settings.data_dir / "secret_key").read_text().strip()


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == ERROR_KEYS
    if code is not None:
        assert error["code"] == code
    return dict(error)


def chat(server: RunningServer, credential: str, content: str, *, record: bool = True, **extra: Any) -> httpx.Response:
    """One chat call; with `record` (as the web UI does) it names a new session unless it names one already."""
    body: dict[str, Any] = {
        "model": model_of(server, credential), "messages": [{"role": "user", "content": content}], "max_tokens": 3,
    }
    headers = bearer(credential)
    headers.update(extra.pop("headers", {}))
    body.update(extra)
    if record and "session_id" not in body and "X-Session-Id" not in headers:
        headers["X-Session-Id"] = f"test-{uuid.uuid4().hex}"
    return httpx.post(f"{server.v1}/chat/completions", json=body, headers=headers, timeout=60)


def model_of(server: RunningServer, credential: str) -> str:
    response = httpx.get(f"{server.v1}/models", headers=bearer(credential), timeout=30)
    response.raise_for_status()
    return str(response.json()["data"][0]["id"])
