"""The per-user keyword index: BM25 (bm25s) over the user's chunks, rebuilt whole on every change.

What is persisted is the chunks (`DATA_DIR/vectors/<user>/bm25/chunks.json`, through the JSON store);
the BM25 matrices are derived from them in memory. Rebuilding is cheap for one user's documents
(about a second for 100k chunks) and keeps one source of truth. Only the most recently used users'
indexes stay in memory, so memory is bounded however many users there are.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bm25s  # type: ignore[import-untyped]
import numpy as np

from backend.rag.chunk_records import record_from_json, record_to_json
from backend.rag.ports import ChunkRecord, ScoredChunk
from backend.rag.user_state_cache import FileStamp, UserLocks, UserStateCache, file_stamp
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout

CHUNKS_FILE = "chunks.json"
CACHED_USERS = 16
"""Users whose BM25 index stays in memory; others are rebuilt from their chunks on their next search."""
FORMAT_VERSION = 1


@dataclass
class _UserKeywords:
    records: list[ChunkRecord]
    tokenizer: Any
    retriever: Any
    stamp: FileStamp | None


def _build(records: list[ChunkRecord], stamp: FileStamp | None) -> _UserKeywords:
    if not records:
        return _UserKeywords(records, None, None, stamp)
    tokenizer = bm25s.tokenization.Tokenizer(lower=True, stopwords="en")
    tokens = tokenizer.tokenize([record.text for record in records], return_as="ids", show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    return _UserKeywords(records, tokenizer, retriever, stamp)


class Bm25KeywordIndex:
    """Implements the KeywordIndex port; blocking work runs in worker threads."""

    def __init__(self, layout: DataLayout, store: JsonStore, cached_users: int = CACHED_USERS) -> None:
        self._layout = layout
        self._store = store
        self._cache: UserStateCache[_UserKeywords] = UserStateCache(cached_users)
        self._lock = UserLocks()

    def _path(self, username: str) -> Path:
        return self._layout.user_vectors_dir(username) / "bm25" / CHUNKS_FILE

    def _current(self, username: str) -> _UserKeywords:
        """The user's index as on disk now (another worker process may have changed it); blocking."""
        path = self._path(username)
        stamp = file_stamp(path)
        cached = self._cache.get(username)
        if cached is not None and cached.stamp == stamp:
            self._cache.put(username, cached)
            return cached
        data = self._store.load(path) if stamp is not None else None
        records = [record_from_json(value) for value in (data or {}).get("chunks", [])]
        state = _build(records, stamp)
        self._cache.put(username, state)
        return state

    def _change(self, username: str, edit: Any) -> Any:
        path = self._path(username)
        outcome: list[Any] = []

        def change(current: Any) -> Any:
            records = [record_from_json(value) for value in (current or {}).get("chunks", [])]
            kept, result = edit(records)
            outcome.append(result)
            return {"version": FORMAT_VERSION, "chunks": [record_to_json(record) for record in kept]}

        self._store.modify(path, change, default=lambda: None)
        # Rebuilt from the file just written; the stamp is taken before reading so a later write by
        # another process is seen as a change, never hidden behind ours.
        self._cache.forget(username)
        self._current(username)
        return outcome[0]

    # --- the port

    async def add(self, username: str, records: Sequence[ChunkRecord]) -> None:
        if not records:
            return
        added = list(records)

        def edit(existing: list[ChunkRecord]) -> tuple[list[ChunkRecord], None]:
            replaced = {record.chunk_id for record in added}
            return [record for record in existing if record.chunk_id not in replaced] + added, None

        async with self._lock(username):
            await asyncio.to_thread(self._change, username, edit)

    async def search(self, username: str, query: str, top_k: int) -> list[ScoredChunk]:
        def run() -> list[ScoredChunk]:
            state = self._current(username)
            if state.retriever is None or top_k < 1:
                return []
            tokens = state.tokenizer.tokenize([query], return_as="ids", update_vocab=False, show_progress=False)
            k = min(top_k, len(state.records))
            positions, scores = state.retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
            return [
                ScoredChunk(state.records[int(position)], float(score))
                for position, score in zip(np.asarray(positions)[0], np.asarray(scores)[0], strict=True)
                if score > 0  # no query term in the chunk: not a keyword hit at all
            ]

        async with self._lock(username):
            return await asyncio.to_thread(run)

    async def delete_file(self, username: str, file_id: str) -> int:
        def edit(existing: list[ChunkRecord]) -> tuple[list[ChunkRecord], int]:
            kept = [record for record in existing if record.file_id != file_id]
            return kept, len(existing) - len(kept)

        async with self._lock(username):
            if file_id not in await asyncio.to_thread(self._file_ids, username):
                return 0
            removed: int = await asyncio.to_thread(self._change, username, edit)
            return removed

    def _file_ids(self, username: str) -> set[str]:
        return {record.file_id for record in self._current(username).records}

    async def file_ids(self, username: str) -> set[str]:
        async with self._lock(username):
            return await asyncio.to_thread(self._file_ids, username)

    async def delete_user(self, username: str) -> None:
        path = self._path(username)

        def run() -> None:
            self._store.remove(path)
            shutil.rmtree(path.parent, ignore_errors=True)
            self._cache.forget(username)

        async with self._lock(username):
            await asyncio.to_thread(run)
