"""URLs as they may be shown to clients and logs: never their credentials, query strings or fragments.

Every configured service address (LLM backends, search and weather services, Wikipedia) may carry a key in
its user info or query; whatever the backend says about an address goes through this one module.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit, urlunsplit

UNREADABLE = "its configured address"
"""Shown instead of an address that does not parse: the raw text might be where a secret sits."""


def display_url(url: str) -> str:
    """`http://user:secret@gpu-box:8001/v1?key=x` becomes `http://gpu-box:8001/v1`."""
    parts = _parts(url)
    if parts is None or not parts.hostname:
        return UNREADABLE
    return urlunsplit((parts.scheme, _host_and_port(parts), parts.path, "", ""))


def display_host(url: str) -> str:
    """Host and port only, for "cannot connect to X at gpu-box:8001": even the path may hold a token."""
    parts = _parts(url)
    return (_host_and_port(parts) if parts is not None else "") or UNREADABLE


def _parts(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsed lazily: a port that is not a number raises only here
    except ValueError:
        return None
    return parts


def _host_and_port(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host
