"""The ports of the RAG pipeline: the embedder, the vector store, the keyword index and the retriever.

Adapters live beside this module and are chosen in `backend/rag/factory.py` (as `backend/llm/factory.py`
does for the LLM). Every store is scoped to one user by construction: the owner is an argument of every
call and each adapter keeps a separate index or collection per user, never a filter someone can forget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
"""Shape (n, dimensions), L2-normalised, so inner product is cosine similarity."""


@dataclass(frozen=True)
class ChunkRecord:
    """One chunk of one document, with everything a citation needs."""

    chunk_id: str
    """`{file_id}:{chunk_index}`: unique within the user, stable across restarts."""
    file_id: str
    filename: str
    chunk_index: int
    """0-based position of the chunk in its document."""
    text: str
    char_start: int
    char_end: int
    """The chunk is `document_text[char_start:char_end]`."""
    page_start: int | None = None
    page_end: int | None = None
    """1-based pages the chunk spans (PDF); None for formats without pages."""
    page_breaks: tuple[int, ...] = ()
    """Where pages `page_start + 1` .. `page_end` begin in `text` (offsets into it), so a quote from a chunk
    that crosses a page break is cited with the one page it is on."""


@dataclass(frozen=True)
class ScoredChunk:
    record: ChunkRecord
    score: float
    """Higher is more relevant; the scale depends on who scored it (cosine, BM25, fused rank)."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors. Loaded once at start-up; never downloads anything."""

    model_id: str
    dimensions: int

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Batched and run off the event loop; empty input gives an empty (0, dimensions) array."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> int: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class VectorStore(Protocol):
    """Dense vectors of each user's chunks, persisted, removable by document."""

    name: str

    async def add(self, username: str, records: Sequence[ChunkRecord], vectors: Vectors) -> None: ...

    async def search(self, username: str, vector: Vectors, top_k: int) -> list[ScoredChunk]:
        """`vector` has shape (dimensions,) or (1, dimensions); results best first."""
        ...

    async def delete_file(self, username: str, file_id: str) -> int:
        """Removes every chunk of the document; returns how many were removed (0 if none)."""
        ...

    async def file_ids(self, username: str) -> set[str]:
        """Documents that have chunks here, for the start-up sweep of orphans."""
        ...

    async def delete_user(self, username: str) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class KeywordIndex(Protocol):
    """A per-user BM25 index over the same chunks, persisted beside the vectors."""

    async def add(self, username: str, records: Sequence[ChunkRecord]) -> None: ...

    async def search(self, username: str, query: str, top_k: int) -> list[ScoredChunk]: ...

    async def delete_file(self, username: str, file_id: str) -> int: ...

    async def file_ids(self, username: str) -> set[str]: ...

    async def delete_user(self, username: str) -> None: ...


@runtime_checkable
class DocumentRetriever(Protocol):
    """Searches only the given user's documents (hybrid or dense, per settings): what `rag_retrieval` reads."""

    async def search(self, username: str, query: str, top_k: int) -> list[ScoredChunk]: ...
