"""Fetch JSON from an internet service with a hard deadline and a size cap, naming every failure.

The internet tools (web search, weather) must answer "unavailable: <reason>" instead of raising or hanging,
so every way an HTTP exchange can go wrong becomes one `ServiceUnavailable` whose message is that reason.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from backend.config import Settings

DEFAULT_MAX_BYTES = 4_000_000
"""Far above any real search or forecast answer; stops a broken or hostile endpoint from filling memory."""
ERROR_BODY_BYTES = 4096
"""Of an error answer only the start is read, for a human reason such as Open-Meteo's `reason`."""


def request_budget_s(settings: Settings) -> float:
    """Time one internet-tool call may spend on the network.

    A tenth of the tool's overall time is kept back so that the tool's own specific reason ("SearXNG did
    not answer within 8 s"), not the registry's generic timeout, is what reaches the model.
    """
    return min(settings.internet_tools_timeout_s, settings.tool_timeout_s * 0.9)


class ServiceUnavailable(Exception):
    """An internet service gave no usable answer; `str(error)` is the reason shown after "unavailable: "."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        """The HTTP status when the service answered with an error, for callers that explain particular ones."""


def describe_http_failure(service: str, error: Exception, timeout_s: float, url: str) -> str:
    """Explain an httpx failure in one line, without internals such as stack traces or headers."""
    if isinstance(error, (httpx.TimeoutException, TimeoutError)):
        return f"{service} did not answer within {timeout_s:g} s"
    if isinstance(error, httpx.HTTPStatusError):
        return f"{service} answered HTTP {error.response.status_code}"
    if isinstance(error, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return f"the configured {service} URL is not valid"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect to {service} at {_address(url)}"
    if isinstance(error, httpx.HTTPError):
        return f"network error talking to {service} at {_address(url)} ({type(error).__name__})"
    return f"{service} failed ({type(error).__name__})"


def _address(url: str) -> str:
    """Host and port only: a configured URL may carry credentials or tokens in its path or query."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "its configured address"
    return f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host or "its configured address"


def _error_detail(body: bytes) -> str:
    """Pick out the human reason some services put in an error body (Open-Meteo: `{"reason": ...}`)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(payload, dict):
        return ""
    for key in ("reason", "message", "detail", "error"):
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:200]
    return ""


async def fetch_json(
    url: str,
    params: dict[str, str | int | float],
    *,
    service: str,
    timeout_s: float,
    deadline: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Any:
    """GET `url` and return its decoded JSON body, or raise `ServiceUnavailable`.

    httpx's own timeout bounds each read, not the whole exchange, so a server that trickles bytes could
    hold a request forever; `asyncio.timeout_at` puts one deadline over connect, status and body. A tool
    making several requests passes the `deadline` (event-loop time) of its whole call; `timeout_s` is
    then that call's budget, named in the reason when it runs out.
    """
    if deadline is None:
        deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        async with (
            asyncio.timeout_at(deadline),
            httpx.AsyncClient(timeout=timeout_s, follow_redirects=True) as client,
            client.stream("GET", url, params=params, headers={"Accept": "application/json"}) as response,
        ):
            if not response.is_success:
                detail = _error_detail(await _read_capped(response, ERROR_BODY_BYTES))
                suffix = f": {detail}" if detail else ""
                raise ServiceUnavailable(
                    f"{service} answered HTTP {response.status_code}{suffix}", status=response.status_code
                )
            body = await _read_capped(response, max_bytes)
            if len(body) > max_bytes:
                raise ServiceUnavailable(f"{service} sent more than {max_bytes} bytes")
    except (httpx.HTTPError, httpx.InvalidURL, TimeoutError) as error:
        raise ServiceUnavailable(describe_http_failure(service, error, timeout_s, url)) from error
    try:
        return json.loads(body)
    except ValueError as error:
        raise ServiceUnavailable(f"{service} sent a response that is not valid JSON") from error


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """Read the body, stopping after `max_bytes` + 1 bytes: enough for the caller to tell it was too long."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            break
    return bytes(body[: max_bytes + 1])
