"""Fixtures for the RAG tests: the real embedding model (loaded once), and a guard that refuses the network."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from backend.rag.embedder_sentence_transformers import SentenceTransformerEmbedder


@pytest.fixture(scope="session")
def embedder() -> Iterator[SentenceTransformerEmbedder]:
    """The bundled all-MiniLM-L6-v2, loaded once for the session (a few seconds)."""
    loaded = asyncio.run(SentenceTransformerEmbedder.load())
    yield loaded
    asyncio.run(loaded.aclose())


def _is_loopback(address: Any) -> bool:
    if isinstance(address, str | bytes):  # a Unix socket path
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every connect() to a non-loopback address fails and is recorded; the test asserts the list stays empty."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(sock: socket.socket, address: Any) -> Any:
        if not _is_loopback(address):
            attempts.append(address)
            raise OSError(f"network access attempted in a test: {address!r}")
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> Any:
        if not _is_loopback(address):
            attempts.append(address)
            return 101  # ENETUNREACH
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield attempts
