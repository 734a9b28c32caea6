"""Fetch JSON from an internet service within the call's budget and a size cap, naming every failure.

Every HTTP exchange of the internet tools goes through `fetch_json` (Wikipedia's package too, from its
worker thread), so every way one can go wrong becomes one `ServiceUnavailable` whose message is the reason.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from backend.tools.internet.service_call import Budget, ServiceUnavailable, describe_failure

MAX_RESPONSE_BYTES = 4_000_000
"""Far above any real search, summary or forecast answer; stops a broken or hostile endpoint from filling memory."""
ERROR_BODY_BYTES = 4096
"""Of an error answer only the start is read, for a human reason such as Open-Meteo's `reason`."""


async def fetch_json(
    url: str,
    params: dict[str, Any],
    *,
    service: str,
    budget: Budget,
    headers: dict[str, str] | None = None,
) -> Any:
    """GET `url` and return its decoded JSON body, or raise `ServiceUnavailable`.

    httpx's own timeout bounds each read, not the whole exchange, so a server that trickles bytes could
    hold a request forever; `asyncio.timeout_at` puts the call's one deadline over connect, status and body.
    """
    sent_headers = {"Accept": "application/json", **(headers or {})}
    try:
        async with (
            asyncio.timeout_at(budget.deadline),
            httpx.AsyncClient(timeout=budget.seconds, follow_redirects=True) as client,
            client.stream("GET", url, params=params, headers=sent_headers) as response,
        ):
            if not response.is_success:
                detail = _error_detail(await _read_capped(response, ERROR_BODY_BYTES))
                suffix = f": {detail}" if detail else ""
                raise ServiceUnavailable(
                    f"{service} answered HTTP {response.status_code}{suffix}", status=response.status_code
                )
            body = await _read_capped(response, MAX_RESPONSE_BYTES)
            if len(body) > MAX_RESPONSE_BYTES:
                raise ServiceUnavailable(f"{service} sent more than {MAX_RESPONSE_BYTES} bytes")
        return json.loads(body)
    except (httpx.HTTPError, httpx.InvalidURL, TimeoutError, ValueError) as error:  # ValueError: not JSON
        raise ServiceUnavailable(describe_failure(service, error, budget.seconds, url)) from error


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """Read the body, stopping after `max_bytes` + 1 bytes: enough for the caller to tell it was too long."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            break
    return bytes(body[: max_bytes + 1])


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
