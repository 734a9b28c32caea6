"""Small in-memory implementations of the RAG ports, for testing the document service without a model."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from backend.rag.ports import ChunkRecord, ScoredChunk, Vectors

DIMENSIONS = 64


class HashingEmbedder:
    """Bag of hashed words, L2-normalised: texts sharing words are close, deterministically."""

    model_id = "hashing-test"
    dimensions = DIMENSIONS

    def __init__(self) -> None:
        self.calls = 0

    async def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMENSIONS] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)

    def count_tokens(self, texts: Sequence[str]) -> int:
        return sum(len(text.split()) for text in texts)

    async def aclose(self) -> None:
        return None


class MemoryVectorStore:
    name = "memory"

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, tuple[ChunkRecord, Vectors]]] = {}
        self.fail_next_add = False

    async def add(self, username: str, records: Sequence[ChunkRecord], vectors: Vectors) -> None:
        if self.fail_next_add:
            self.fail_next_add = False
            raise RuntimeError("vector store down")
        user = self.rows.setdefault(username, {})
        for record, vector in zip(records, vectors, strict=True):
            user[record.chunk_id] = (record, vector)

    async def search(self, username: str, vector: Vectors, top_k: int) -> list[ScoredChunk]:
        query = vector.reshape(-1)
        stored_rows = self.rows.get(username, {}).values()
        scored = [ScoredChunk(record, float(np.dot(query, stored))) for record, stored in stored_rows]
        return sorted(scored, key=lambda hit: -hit.score)[:top_k]

    async def delete_file(self, username: str, file_id: str) -> int:
        user = self.rows.get(username, {})
        doomed = [key for key, (record, _) in user.items() if record.file_id == file_id]
        for key in doomed:
            del user[key]
        return len(doomed)

    async def file_ids(self, username: str) -> set[str]:
        return {record.file_id for record, _ in self.rows.get(username, {}).values()}

    async def delete_user(self, username: str) -> None:
        self.rows.pop(username, None)

    async def aclose(self) -> None:
        return None


class MemoryKeywordIndex:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, ChunkRecord]] = {}

    async def add(self, username: str, records: Sequence[ChunkRecord]) -> None:
        self.rows.setdefault(username, {}).update({record.chunk_id: record for record in records})

    async def search(self, username: str, query: str, top_k: int) -> list[ScoredChunk]:
        words = set(query.lower().split())
        scored = [
            ScoredChunk(record, float(len(words & set(record.text.lower().split()))))
            for record in self.rows.get(username, {}).values()
        ]
        return sorted((hit for hit in scored if hit.score > 0), key=lambda hit: -hit.score)[:top_k]

    async def delete_file(self, username: str, file_id: str) -> int:
        user = self.rows.get(username, {})
        doomed = [key for key, record in user.items() if record.file_id == file_id]
        for key in doomed:
            del user[key]
        return len(doomed)

    async def file_ids(self, username: str) -> set[str]:
        return {record.file_id for record in self.rows.get(username, {}).values()}

    async def delete_user(self, username: str) -> None:
        self.rows.pop(username, None)
