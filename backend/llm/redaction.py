"""Backend URLs as they may be shown to clients and logs: without credentials or query strings."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def display_url(url: str) -> str:
    """`http://user:secret@gpu-box:8001/v1?key=x` becomes `http://gpu-box:8001/v1`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
