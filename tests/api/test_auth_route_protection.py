"""Every /v1/* and /api/* route demands a credential, except sign-in; CORS preflights pass without one."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.api.account_helpers import admin_token, assert_error, bearer, new_user_token
from tests.conftest import RunningServer, ServerThread, make_settings

PUBLIC = {("/api/auth/login", "post"), ("/api/auth/signup", "post")}
"""The only /api and /v1 operations reachable without a credential."""


def _protected_operations(server: RunningServer) -> list[tuple[str, str]]:
    spec = httpx.get(f"{server.base_url}/openapi.json", timeout=30).json()
    operations = [
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"} and path.startswith(("/api/", "/v1/"))
    ]
    return [operation for operation in operations if operation not in PUBLIC]


def test_every_v1_and_api_route_refuses_requests_without_credentials(server: RunningServer) -> None:
    operations = _protected_operations(server)
    paths = {path for path, _ in operations}
    assert {"/v1/chat/completions", "/v1/models", "/api/sessions", "/api/admin/users", "/api/auth/me"} <= paths
    for path, method in operations:
        url = server.base_url + re.sub(r"\{[^}]+\}", "some-id", path)
        for headers in ({}, bearer("garbage-token")):
            response = httpx.request(method.upper(), url, json={}, headers=headers, timeout=30)
            assert response.status_code == 401, f"{method.upper()} {path} answered {response.status_code}"
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert_error(response, 401)


def test_health_readiness_and_metrics_need_no_credentials(server: RunningServer) -> None:
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(f"{server.base_url}{path}", timeout=30).status_code == 200


def test_admin_routes_refuse_signed_in_users_with_403(server: RunningServer) -> None:
    _, user = new_user_token(server, admin_token(server))
    admin_operations = [op for op in _protected_operations(server) if op[0].startswith("/api/admin/")]
    assert len(admin_operations) >= 4
    for path, method in admin_operations:
        url = server.base_url + re.sub(r"\{[^}]+\}", "admin", path)
        response = httpx.request(method.upper(), url, json={"username": "x", "password": "y" * 10},
                                 headers=bearer(user), timeout=30)
        assert_error(response, 403, "admin_required")


def test_cors_preflight_is_answered_without_credentials(tmp_path: Path) -> None:
    origin = "http://ui.example"
    settings = make_settings(tmp_path, cors_origins=origin)
    with ServerThread(settings) as base_url:
        preflight = httpx.options(
            f"{base_url}/v1/chat/completions",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        # The refusal itself carries CORS headers, so a browser app can read the 401.
        refused = httpx.get(f"{base_url}/v1/models", headers={"Origin": origin})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == origin
