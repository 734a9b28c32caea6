"""Attacks on the request layer (issue 12): huge, endless, stalled and invalid bodies; slow headers; headers.

Each test is the attack itself, on loopback, bounded in bytes and seconds. The servers run in this
process (tests.conftest.ServerThread), so the process's VmRSS is the server's memory too.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

import backend.api
from backend.api.deps import get_tool_registry
from backend.api.security_headers import API_CSP, DOCS_CSP
from tests.api.account_helpers import ERROR_KEYS, admin_token, assert_error, bearer, unique_name
from tests.conftest import RunningServer, ServerThread, credential_for, make_settings

MB = 1024 * 1024
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "content-security-policy": API_CSP,
}
SLOW = 1.0
"""Header and body timeouts of the `slow_server` (seconds); the defaults are 10 and 30."""


# --- raw HTTP on a socket: what an attacker writes, byte by byte


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        error = json.loads(self.body)["error"]
        assert set(error) == ERROR_KEYS
        return dict(error)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_response(sock: socket.socket, timeout: float = 5) -> RawResponse:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer (got {data!r})"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawResponse(int(status_line.split()[1]), headers, body[:length])


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes the connection within `within` seconds (any bytes it sends first are skipped)."""
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def _send_until_answered(sock: socket.socket, frame: bytes, cap: int, seconds: float = 5) -> tuple[int, float]:
    """Write `frame` again and again until the server answers, stops the transfer, or `cap` bytes are out."""
    started, sent = time.monotonic(), 0
    sock.setblocking(False)
    try:
        while sent < cap and time.monotonic() - started < seconds:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(frame)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:  # reset or broken pipe: the server hung up
                    break
    finally:
        sock.setblocking(True)
    return sent, time.monotonic() - started


def _chunk(size: int) -> bytes:
    return b"%x\r\n" % size + b"a" * size + b"\r\n"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _post_json(server: RunningServer, path: str, raw: bytes, credential: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json", **(bearer(credential) if credential else {})}
    return httpx.post(f"{server.base_url}{path}", content=raw, headers=headers, timeout=30)


def _port(server: RunningServer) -> int:
    return server.settings.server_port


# --- bodies over the limit


@pytest.mark.parametrize("signed_in", [False, True], ids=["stranger", "signed-in"])
def test_a_declared_300_mb_body_is_refused_at_once_and_never_read(server: RunningServer, signed_in: bool) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(300 * MB)}
    if signed_in:
        headers.update(server.headers())
    rss_before = _rss_mb()
    with _connect(_port(server)) as sock:
        started = time.monotonic()
        sock.sendall(_head("POST", "/v1/chat/completions", headers))
        sent, _ = _send_until_answered(sock, b"x" * 65536, cap=300 * MB)
        response = _read_response(sock)
        elapsed = time.monotonic() - started
        # Keep writing: the server hung up instead of reading (and discarding) the other 300 MB.
        more, _ = _send_until_answered(sock, b"x" * 65536, cap=300 * MB, seconds=3)
    assert response.status == 413
    assert response.error()["code"] == "request_too_large"
    assert "MAX_REQUEST_MB" in response.error()["message"]
    assert response.headers["connection"] == "close"
    assert elapsed < 1
    assert sent + more < 32 * MB
    assert _rss_mb() - rss_before < 50


def test_a_chunked_body_streaming_past_the_limit_is_cut_off_with_413(server: RunningServer) -> None:
    limit = server.settings.max_request_mb * MB
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked", **server.headers()}
    rss_before = _rss_mb()
    with _connect(_port(server)) as sock:
        sock.sendall(_head("POST", "/v1/chat/completions", headers))
        sent, elapsed = _send_until_answered(sock, _chunk(65536), cap=20 * limit)
        response = _read_response(sock)
    assert response.status == 413
    assert response.error()["code"] == "request_too_large"
    assert elapsed < 2
    # Cut off once the count passed the limit: what was sent beyond it sits in socket buffers.
    assert limit < sent < limit + 16 * MB
    assert _rss_mb() - rss_before < 50


def test_a_strangers_chunked_body_gets_401_unread_and_is_not_read_forever(server: RunningServer) -> None:
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    with _connect(_port(server)) as sock:
        sock.sendall(_head("POST", "/v1/chat/completions", headers))
        before_answer, elapsed = _send_until_answered(sock, _chunk(65536), cap=300 * MB)
        response = _read_response(sock)
        after_answer, _ = _send_until_answered(sock, _chunk(65536), cap=300 * MB, seconds=5)
    assert response.status == 401
    assert response.error()["code"] == "missing_credentials"
    assert elapsed < 1
    assert before_answer < server.settings.max_request_mb * MB  # answered before the body was all read
    # The rest is discarded only up to the largest body any route accepts, then the connection is closed.
    assert after_answer < (server.settings.max_upload_mb + 16) * MB


@pytest.mark.parametrize(
    ("path", "content_type", "declared_mb", "status", "setting"),
    [
        ("/api/files/upload", "multipart/form-data; boundary=x", 30, 413, "MAX_UPLOAD_MB"),
        ("/api/files/upload", "application/json", 10, 413, "MAX_REQUEST_MB"),
        ("/v1/chat/completions", "multipart/form-data; boundary=x", 10, 413, "MAX_REQUEST_MB"),
        ("/api/files/upload", "multipart/form-data; boundary=x", 10, None, None),
    ],
)
def test_uploads_under_api_files_have_their_own_larger_limit(
    server: RunningServer, path: str, content_type: str, declared_mb: int, status: int | None, setting: str | None
) -> None:
    headers = {"Content-Type": content_type, "Content-Length": str(declared_mb * MB)}
    with _connect(_port(server)) as sock:
        sock.sendall(_head("POST", path, headers))
        response = _read_response(sock)
    if status is None:  # within MAX_UPLOAD_MB: it reaches the app (no upload route or no credentials yet)
        assert response.status in (401, 404)
    else:
        assert response.status == status
        assert setting in response.error()["message"]


# --- credentials before bodies, on every route


def _api_routes() -> list[APIRoute]:
    """Every route of every `backend/api/*_router.py`, including routers added later."""
    routes: list[APIRoute] = []
    for module in pkgutil.iter_modules(backend.api.__path__):
        if module.name.endswith("_router"):
            router = importlib.import_module(f"backend.api.{module.name}").router
            routes.extend(route for route in router.routes if isinstance(route, APIRoute))
    return routes


def test_no_route_lets_fastapi_read_its_body_before_its_dependencies() -> None:
    # FastAPI reads a declared body before any dependency runs; every body goes through json_body instead.
    routes = _api_routes()
    assert len(routes) > 10
    assert [route.path for route in routes if route.body_field is not None] == []


def test_every_route_behind_sign_in_checks_credentials_before_reading_its_body(server: RunningServer) -> None:
    spec = httpx.get(f"{server.base_url}/openapi.json", timeout=30).json()
    routes = [(method.upper(), path) for path, operations in spec["paths"].items()
              for method, operation in operations.items() if "requestBody" in operation and "security" in operation]
    assert ("POST", "/v1/chat/completions") in routes and ("POST", "/api/tools/{name}/invoke") in routes
    for method, path in routes:
        # Broken JSON holding a lone surrogate: read first, it would be a 400.
        url = server.base_url + path.replace("{", "").replace("}", "")
        response = httpx.request(method, url, content=b'{"x": "\\ud800", not json',
                                 headers={"Content-Type": "application/json"}, timeout=30)
        assert_error(response, 401, "missing_credentials")


def test_request_bodies_are_still_documented_in_openapi(server: RunningServer) -> None:
    spec = httpx.get(f"{server.base_url}/openapi.json", timeout=30).json()
    chat = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "messages", "tools", "stop"} <= set(chat["properties"])
    assert chat["properties"]["messages"]["items"]["properties"]["role"]["enum"][0] == "system"
    assert "$defs" not in json.dumps(spec)  # every reference resolves inside the document
    invoke = spec["paths"]["/api/tools/{name}/invoke"]["post"]["requestBody"]
    assert invoke["required"] is False and invoke["description"] == "The tool's arguments as one JSON object."
    assert "application/x-www-form-urlencoded" in spec["paths"]["/api/auth/login"]["post"]["requestBody"]["content"]


# --- bounded chat requests


def _chat_body(model: str, **fields: Any) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}).encode()


@pytest.mark.parametrize("count", [1001, 5000, 100_000])
def test_too_many_messages_are_a_400_naming_messages_before_any_tokenizer_runs(
    server: RunningServer, model_id: str, count: int
) -> None:
    raw = _chat_body(model_id, messages=[{"role": "user", "content": ""}] * count)
    assert len(raw) < server.settings.max_request_mb * MB
    started = time.monotonic()
    error = assert_error(_post_json(server, "/v1/chat/completions", raw, server.api_key), 400)
    assert time.monotonic() - started < 1
    assert error["param"] == "messages"
    assert f"at most 1000 messages are accepted (MAX_MESSAGES), got {count}" in error["message"]


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "a" * 1_000_001}],
        [{"role": "system", "content": "a" * 600_000},
         {"role": "user", "content": [{"type": "text", "text": "b" * 400_001}]}],
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": json.dumps({"a": "z" * 1_000_000})}}
        ]}],
    ],
    ids=["one-message", "spread-over-two", "in-tool-call-arguments"],
)
def test_a_prompt_over_max_prompt_chars_is_a_400_before_any_tokenizer_runs(
    server: RunningServer, model_id: str, messages: list[dict[str, Any]]
) -> None:
    started = time.monotonic()
    response = _post_json(server, "/v1/chat/completions", _chat_body(model_id, messages=messages), server.api_key)
    error = assert_error(response, 400)
    assert time.monotonic() - started < 1
    assert error["param"] == "messages"
    assert "(MAX_PROMPT_CHARS)" in error["message"]


def _tool(name: str, description: str = "") -> dict[str, Any]:
    function = {"name": name, "description": description, "parameters": {"type": "object"}}
    return {"type": "function", "function": function}


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"tools": [_tool(f"t{index}") for index in range(129)]}, "tools", "at most 128 tools"),
        ({"tools": [_tool("big", "d" * 1_000_000)]}, "tools", "MAX_PROMPT_CHARS"),
        ({"stop": "s" * 501}, "stop", "at most 500 characters"),
        ({"stop": ["a", "b", "s" * 501]}, "stop", "at most 500 characters"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4 stop sequences"),
        ({"logit_bias": {str(token): 1 for token in range(1025)}}, "logit_bias", "at most 1024"),
    ],
    ids=["129-tools", "huge-tool", "long-stop", "long-stop-in-list", "five-stops", "huge-logit-bias"],
)
def test_tools_and_stop_sequences_are_bounded_with_a_400_naming_them(
    server: RunningServer, model_id: str, fields: dict[str, Any], param: str, words: str
) -> None:
    response = _post_json(server, "/v1/chat/completions", _chat_body(model_id, **fields), server.api_key)
    error = assert_error(response, 400)
    assert error["param"] == param
    assert words in error["message"]


# --- valid text only


SURROGATE = '"x\\ud800"'
"""A JSON string holding a lone surrogate, as the attacker writes it."""


def _with_surrogate(template: str) -> bytes:
    return template.replace("SURROGATE", SURROGATE).encode()


@pytest.mark.parametrize(
    ("method", "path", "template", "param", "credential"),
    [
        ("POST", "/v1/chat/completions", '{"model": "m", "messages": [{"role": "user", "content": SURROGATE}]}',
         "messages[0].content", "api_key"),
        ("POST", "/v1/chat/completions",
         '{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": SURROGATE}]}]}',
         "messages[0].content[0].text", "api_key"),
        ("POST", "/v1/chat/completions", '{"model": "m", "stop": [SURROGATE], "messages": []}', "stop[0]", "api_key"),
        ("POST", "/v1/chat/completions", '{"model": SURROGATE, "messages": []}', "model", "api_key"),
        ("POST", "/api/auth/login", '{"username": "admin", "password": SURROGATE}', "password", None),
        ("POST", "/api/auth/login", '{"username": SURROGATE, "password": "p"}', "username", None),
        ("POST", "/api/auth/signup", '{"username": SURROGATE, "password": "p"}', "username", None),
        ("PUT", "/api/auth/me/password", '{"current_password": SURROGATE, "new_password": "n"}',
         "current_password", "token"),
        ("POST", "/api/auth/api-keys", '{"name": SURROGATE}', "name", "token"),
        ("POST", "/api/admin/users", '{"username": SURROGATE, "password": "p"}', "username", "token"),
        ("PATCH", "/api/admin/users/someone", '{"password": SURROGATE}', "password", "token"),
        ("PATCH", "/api/sessions/some-session", '{"title": SURROGATE}', "title", "token"),
        ("POST", "/api/tools/math_calc/invoke", '{"expression": SURROGATE}', "expression", "token"),
        ("POST", "/api/tools/math_calc/invoke", '{"nested": {"deeper": [1, SURROGATE]}}', "nested.deeper[1]", "token"),
        ("POST", "/api/tools/math_calc/invoke", '{"x\\udc00": 1}', None, "token"),
    ],
)
def test_a_lone_surrogate_anywhere_in_a_body_is_a_400_not_a_500(
    server: RunningServer, method: str, path: str, template: str, param: str | None, credential: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if credential == "api_key":
        headers.update(server.headers())
    elif credential == "token":
        headers.update(bearer(admin_token(server)))
    response = httpx.request(method, f"{server.base_url}{path}", content=_with_surrogate(template), headers=headers,
                             timeout=30)
    error = assert_error(response, 400, "invalid_unicode")
    assert error["param"] == param
    assert "valid Unicode" in error["message"]


def test_a_surrogate_in_an_oauth2_form_login_is_text_not_a_server_error(server: RunningServer) -> None:
    # Forms are percent-encoded bytes: a UTF-8-encoded surrogate (ED A0 80) decodes to U+FFFD, never a surrogate.
    response = httpx.post(f"{server.base_url}/api/auth/login", timeout=30,
                          content=f"username={unique_name()}&password=%ED%A0%80".encode(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_error(response, 401, "invalid_credentials")


def test_valid_surrogate_pairs_and_bodies_that_are_not_utf8_are_told_apart(server: RunningServer) -> None:
    emoji = _post_json(server, "/api/tools/math_calc/invoke", b'{"expression": "\\ud83d\\ude00"}', admin_token(server))
    assert emoji.status_code == 200, emoji.text  # a pair is one valid character: the tool reports its own error
    latin1 = _post_json(server, "/api/auth/login", '{"username": "é", "password": "p"}'.encode("latin-1"))
    assert "not valid JSON" in assert_error(latin1, 400, "invalid_body")["message"]
    deep = _post_json(server, "/api/auth/login", b"[" * 100_000)
    assert_error(deep, 400, "invalid_body")


# --- slow clients


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, ServerThread]]:
    """A server whose header and body timeouts are SLOW seconds."""
    settings = make_settings(tmp_path_factory.mktemp("slow"), client_header_timeout_s=SLOW, client_body_timeout_s=SLOW)
    thread = ServerThread(settings)
    with thread as base_url:
        yield RunningServer(base_url, settings, credential_for(base_url, settings)), thread


def test_half_a_header_line_is_answered_408_and_closed_within_the_header_timeout(
    slow_server: tuple[RunningServer, ServerThread],
) -> None:
    server, _ = slow_server
    with _connect(_port(server)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaa")
        response = _read_response(sock, timeout=SLOW + 3)
        elapsed = time.monotonic() - started
        assert _closed_by_server(sock, within=1)
    assert response.status == 408
    assert response.error()["code"] == "request_timeout"
    assert SECURITY_HEADERS.items() <= response.headers.items()
    assert SLOW * 0.9 < elapsed < SLOW + 2


def test_a_connection_that_never_sends_a_byte_is_closed_without_an_answer(
    slow_server: tuple[RunningServer, ServerThread],
) -> None:
    server, _ = slow_server
    with _connect(_port(server)) as sock:
        sock.settimeout(SLOW + 3)
        assert sock.recv(1024) == b""


def test_many_slowloris_sockets_do_not_stop_a_normal_request_and_are_all_closed(
    slow_server: tuple[RunningServer, ServerThread],
) -> None:
    server, _ = slow_server
    attackers = [_connect(_port(server)) for _ in range(200)]
    try:
        for sock in attackers:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
        started = time.monotonic()
        assert httpx.get(f"{server.base_url}/health", timeout=5).status_code == 200
        assert httpx.get(f"{server.v1}/models", headers=server.headers(), timeout=5).status_code == 200
        assert time.monotonic() - started < 1
        deadline = time.monotonic() + SLOW + 4
        closed = sum(_closed_by_server(sock, within=max(0.01, deadline - time.monotonic())) for sock in attackers)
        assert closed == len(attackers)
    finally:
        for sock in attackers:
            sock.close()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_that_stalls_is_answered_408_within_the_body_timeout(
    slow_server: tuple[RunningServer, ServerThread], framing: str
) -> None:
    server, _ = slow_server
    headers = {"Content-Type": "application/json", **server.headers()}
    if framing == "chunked":
        headers["Transfer-Encoding"] = "chunked"
        start = b'9\r\n{"model":\r\n'
    else:
        headers["Content-Length"] = "1000"
        start = b'{"model":'
    with _connect(_port(server)) as sock:
        started = time.monotonic()
        sock.sendall(_head("POST", "/v1/chat/completions", headers) + start)
        response = _read_response(sock, timeout=SLOW + 3)
        elapsed = time.monotonic() - started
        assert _closed_by_server(sock, within=1)
    assert response.status == 408
    assert response.error()["code"] == "request_timeout"
    assert SLOW * 0.9 < elapsed < SLOW + 2


def test_a_slow_but_steady_body_is_not_timed_out(slow_server: tuple[RunningServer, ServerThread]) -> None:
    # The body timeout is the longest pause between reads, not a deadline for the whole body.
    server, _ = slow_server
    body = json.dumps({"username": unique_name(), "password": "not-the-password"}).encode()
    third = len(body) // 3 + 1
    pieces = [body[index:index + third] for index in range(0, len(body), third)]
    with _connect(_port(server)) as sock:
        sock.sendall(_head("POST", "/api/auth/login", {"Content-Type": "application/json",
                                                        "Content-Length": str(len(body))}))
        started = time.monotonic()
        for piece in pieces:
            time.sleep(SLOW * 0.6)
            sock.sendall(piece)
        response = _read_response(sock)
    assert time.monotonic() - started > SLOW * 1.5  # longer in total than the timeout, never idle that long
    assert response.status == 401
    assert response.error()["code"] == "invalid_credentials"


# --- security headers


def _assert_security_headers(response: httpx.Response, csp: str = API_CSP) -> None:
    for name, value in {**SECURITY_HEADERS, "content-security-policy": csp}.items():
        assert response.headers.get_list(name) == [value], (name, response.status_code)


def test_security_headers_are_on_every_kind_of_response(server: RunningServer, model_id: str) -> None:
    _assert_security_headers(httpx.get(f"{server.base_url}/health", timeout=30))
    _assert_security_headers(httpx.get(f"{server.v1}/models", timeout=30))  # 401
    _assert_security_headers(httpx.get(f"{server.base_url}/nowhere", timeout=30))  # 404
    _assert_security_headers(_post_json(server, "/v1/chat/completions", b"{", server.api_key))  # 400
    _assert_security_headers(httpx.options(f"{server.v1}/models", timeout=30))  # 405
    body = {"model": model_id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, headers=server.headers(), timeout=60) as r:
        assert r.status_code == 200
        _assert_security_headers(r)
        assert [line for line in r.iter_lines() if line][-1] == "data: [DONE]"


def test_security_headers_are_on_413_and_500_responses_too(slow_server: tuple[RunningServer, ServerThread]) -> None:
    server, thread = slow_server
    with _connect(_port(server)) as sock:
        sock.sendall(_head("POST", "/v1/models", {"Content-Length": str(10 * MB)}))
        too_large = _read_response(sock)
    assert too_large.status == 413
    assert SECURITY_HEADERS.items() <= too_large.headers.items()

    class BrokenRegistry:
        def list(self) -> list[object]:
            raise RuntimeError("an internal failure")

    app = thread.server.config.app
    app.dependency_overrides[get_tool_registry] = lambda: BrokenRegistry()
    try:
        failed = httpx.get(f"{server.base_url}/api/tools", headers=server.headers(), timeout=30)
    finally:
        del app.dependency_overrides[get_tool_registry]
    assert_error(failed, 500)
    _assert_security_headers(failed)


def test_the_docs_page_gets_a_policy_that_lets_swagger_ui_load(server: RunningServer) -> None:
    page = httpx.get(f"{server.base_url}/docs", timeout=30)
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    _assert_security_headers(page, csp=DOCS_CSP)
    assert "https://cdn.jsdelivr.net" in DOCS_CSP and "frame-ancestors 'none'" in DOCS_CSP
