"""The retrieval port the `rag_retrieval` tool reads through; the RAG issue supplies the adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class RetrievedChunk:
    """One passage of a user's document, with what a citation needs."""

    text: str
    filename: str
    score: float
    """Higher is more relevant."""
    page: int | None = None
    """1-based page for paged formats (PDF); None where pages do not exist."""


@runtime_checkable
class DocumentRetriever(Protocol):
    """Searches only the given user's documents: the owner is an argument, never inferred."""

    async def search(self, username: str, query: str, top_k: int) -> list[RetrievedChunk]: ...
