"""VECTOR_DB_TYPE=chroma: one Chroma collection per user, embedded under DATA_DIR or on a Chroma server.

We always hand Chroma our own vectors and create every collection with `embedding_function=None`:
Chroma's default embedding function downloads an ONNX model on first use, which must never happen
here (offline, and not our model). Telemetry is off. With several API replicas, point them all at one
Chroma server (CHROMA_HOST): the embedded client keeps its database in-process and is for one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import chromadb
import numpy as np
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import NotFoundError

from backend.rag.ports import ChunkRecord, ScoredChunk, Vectors
from backend.storage.private_paths import make_private_dirs

T = TypeVar("T")
PAGE_SIZE = 5000
"""Rows fetched per call when listing a collection (the start-up sweep), so memory stays bounded."""


def collection_name(username: str) -> str:
    """A valid Chroma name for any username: a digest, so no username can clash with or address another."""
    return "user-" + hashlib.sha256(username.encode("utf-8")).hexdigest()[:48]


def chroma_settings() -> ChromaSettings:
    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def _metadata(record: ChunkRecord) -> dict[str, str | int]:
    values: dict[str, str | int] = {
        "file_id": record.file_id, "filename": record.filename, "chunk_index": record.chunk_index,
        "char_start": record.char_start, "char_end": record.char_end,
    }
    # Chroma metadata holds no None: pages are absent for formats without pages.
    if record.page_start is not None:
        values["page_start"] = record.page_start
    if record.page_end is not None:
        values["page_end"] = record.page_end
    if record.page_breaks:  # metadata values are scalars
        values["page_breaks"] = ",".join(str(offset) for offset in record.page_breaks)
    return values


def _record(chunk_id: str, text: str | None, metadata: Any) -> ChunkRecord:
    page_start, page_end = metadata.get("page_start"), metadata.get("page_end")
    return ChunkRecord(
        chunk_id=chunk_id, file_id=str(metadata["file_id"]), filename=str(metadata["filename"]),
        chunk_index=int(metadata["chunk_index"]), text=text or "",
        char_start=int(metadata["char_start"]), char_end=int(metadata["char_end"]),
        page_start=None if page_start is None else int(page_start),
        page_end=None if page_end is None else int(page_end),
        page_breaks=tuple(int(offset) for offset in str(metadata.get("page_breaks") or "").split(",") if offset),
    )


class ChromaVectorStore:
    """Implements the VectorStore port on a Chroma client (embedded or HTTP); calls run in worker threads."""

    name = "chroma"

    def __init__(self, client: Any, dimensions: int) -> None:
        self._client = client
        self.dimensions = dimensions
        self._max_batch = int(client.get_max_batch_size())
        # Collection handles, so a search is one call (one round trip to a Chroma server), not three.
        self._collections: dict[str, Any] = {}

    @classmethod
    def embedded(cls, folder: Path, dimensions: int) -> ChromaVectorStore:
        make_private_dirs(folder)
        return cls(chromadb.PersistentClient(path=str(folder), settings=chroma_settings()), dimensions)

    @classmethod
    def remote(cls, host: str, port: int, dimensions: int) -> ChromaVectorStore:
        return cls(chromadb.HttpClient(host=host, port=port, settings=chroma_settings()), dimensions)

    def _collection(self, username: str, create: bool) -> Any:
        cached = self._collections.get(username)
        if cached is not None:
            return cached
        name = collection_name(username)
        if create:
            collection = self._client.get_or_create_collection(
                name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}},
                metadata={"username": username},
            )
        else:
            try:
                collection = self._client.get_collection(name, embedding_function=None)
            except NotFoundError:
                return None
        self._collections[username] = collection
        return collection

    def _run(self, username: str, create: bool, work: Callable[[Any], T], absent: T) -> T:
        """`work(collection)`, once more with a fresh handle if another replica deleted the collection meanwhile."""
        for attempt in range(2):
            collection = self._collection(username, create)
            if collection is None:
                return absent
            try:
                return work(collection)
            except NotFoundError:
                self._collections.pop(username, None)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def add(self, username: str, records: Sequence[ChunkRecord], vectors: Vectors) -> None:
        if len(records) != len(vectors):
            raise ValueError(f"{len(records)} records but {len(vectors)} vectors")
        if not records:
            return
        matrix = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(records), self.dimensions)

        def upsert(collection: Any) -> None:
            for start in range(0, len(records), self._max_batch):
                part = records[start : start + self._max_batch]
                # Upsert: the same chunk id again replaces it, as in the FAISS store.
                collection.upsert(
                    ids=[record.chunk_id for record in part],
                    embeddings=matrix[start : start + len(part)],
                    documents=[record.text for record in part],
                    metadatas=[_metadata(record) for record in part],
                )

        await asyncio.to_thread(self._run, username, True, upsert, None)

    async def search(self, username: str, vector: Vectors, top_k: int) -> list[ScoredChunk]:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dimensions)

        def run(collection: Any) -> list[ScoredChunk]:
            found = collection.query(
                query_embeddings=query, n_results=top_k, include=["documents", "metadatas", "distances"]
            )
            ids, documents = found["ids"][0], found["documents"][0]
            metadatas, distances = found["metadatas"][0], found["distances"][0]
            # Cosine space: distance = 1 - cosine similarity.
            return [
                ScoredChunk(_record(chunk_id, text, metadata), 1.0 - float(distance))
                for chunk_id, text, metadata, distance in zip(ids, documents, metadatas, distances, strict=True)
            ]

        if top_k < 1:
            return []
        return await asyncio.to_thread(self._run, username, False, run, [])

    async def delete_file(self, username: str, file_id: str) -> int:
        def run(collection: Any) -> int:
            doomed = collection.get(where={"file_id": file_id}, include=[])["ids"]
            for start in range(0, len(doomed), self._max_batch):
                collection.delete(ids=doomed[start : start + self._max_batch])
            return len(doomed)

        return await asyncio.to_thread(self._run, username, False, run, 0)

    async def file_ids(self, username: str) -> set[str]:
        def run(collection: Any) -> set[str]:
            found: set[str] = set()
            offset = 0
            while True:
                page = collection.get(include=["metadatas"], limit=PAGE_SIZE, offset=offset)
                found.update(str(metadata["file_id"]) for metadata in page["metadatas"])
                if len(page["ids"]) < PAGE_SIZE:
                    return found
                offset += PAGE_SIZE

        return await asyncio.to_thread(self._run, username, False, run, set())

    async def delete_user(self, username: str) -> None:
        def run() -> None:
            self._collections.pop(username, None)
            with contextlib.suppress(NotFoundError):
                self._client.delete_collection(collection_name(username))

        await asyncio.to_thread(run)

    async def aclose(self) -> None:
        return None
