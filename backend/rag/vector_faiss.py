"""VECTOR_DB_TYPE=faiss: one exact inner-product index per user, with ids so a document's vectors can go.

On disk, per user (`DATA_DIR/vectors/<user>/faiss/`): `index-<generation>.faiss` and `chunks.json`, the
chunk metadata, which names the index file of its generation. A write saves the new index file first
(temp file, fsync, rename), then `chunks.json` through the JSON store (same, under its inter-process
lock), then removes the previous index file. A crash at any point leaves `chunks.json` naming a whole
index file that matches it; an index file it does not name is an orphan and is removed at the next write.
Other processes (uvicorn workers) notice a newer `chunks.json` by its stat and reload before they read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from backend.rag.chunk_records import record_from_json, record_to_json
from backend.rag.ports import ChunkRecord, ScoredChunk, Vectors
from backend.rag.user_state_cache import FileStamp, UserLocks, UserStateCache, file_stamp
from backend.storage.json_store import JsonStore, write_atomically
from backend.storage.layout import DataLayout

logger = logging.getLogger(__name__)

META_FILE = "chunks.json"
FORMAT_VERSION = 1
RELOAD_ATTEMPTS = 3
CACHED_USERS = 32
"""Users whose index stays in memory; the others are read back from disk at their next search."""


class VectorIndexMismatch(RuntimeError):
    """`chunks.json` and its index file disagree (never written that way): refuse rather than cite wrong text."""


@dataclass
class _UserIndex:
    index: Any
    """faiss.IndexIDMap2 over IndexFlatIP: exact cosine on normalised vectors."""
    records: dict[int, ChunkRecord] = field(default_factory=dict)
    next_id: int = 0
    generation: int = 0
    stamp: FileStamp | None = None
    """The stamp of chunks.json when loaded; another process's write changes it."""


class FaissVectorStore:
    """Implements the VectorStore port with FAISS; all index work runs in worker threads."""

    name = "faiss"

    def __init__(
        self, layout: DataLayout, store: JsonStore, dimensions: int, cached_users: int = CACHED_USERS
    ) -> None:
        self._layout = layout
        self._store = store
        self.dimensions = dimensions
        self._cache: UserStateCache[_UserIndex] = UserStateCache(cached_users)
        # One user's operations queue here; other users' run beside them.
        self._lock = UserLocks()

    # --- paths and state

    def _folder(self, username: str) -> Path:
        return self._layout.user_vectors_dir(username) / "faiss"

    def _empty(self) -> _UserIndex:
        return _UserIndex(index=faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimensions)))

    def _from_meta(self, folder: Path, meta: dict[str, Any]) -> _UserIndex:
        if meta.get("version") != FORMAT_VERSION or meta.get("dimensions") != self.dimensions:
            raise VectorIndexMismatch(
                f"{folder / META_FILE} has format {meta.get('version')} and {meta.get('dimensions')} dimensions; "
                f"this server writes format {FORMAT_VERSION} with {self.dimensions} (changed EMBEDDING_MODEL?)"
            )
        raw = np.fromfile(folder / str(meta["index_file"]), dtype=np.uint8)
        index = faiss.deserialize_index(raw)
        records = {int(key): record_from_json(value) for key, value in meta["chunks"]}
        if index.ntotal != len(records):
            raise VectorIndexMismatch(f"{folder} holds {index.ntotal} vectors for {len(records)} chunks")
        return _UserIndex(index=index, records=records, next_id=int(meta["next_id"]),
                          generation=int(meta["generation"]))

    def _current(self, username: str) -> _UserIndex:
        """The user's index as on disk now: the cached one unless another process wrote since (blocking)."""
        folder = self._folder(username)
        meta_path = folder / META_FILE
        for attempt in range(RELOAD_ATTEMPTS):
            stamp = file_stamp(meta_path)
            cached = self._cache.get(username)
            if cached is not None and cached.stamp == stamp:
                self._cache.put(username, cached)
                return cached
            if stamp is None:
                state = self._empty()
            else:
                meta = self._store.load(meta_path)
                try:
                    if meta is None:
                        state = self._empty()
                    elif cached is not None and cached.generation == int(meta["generation"]):
                        state = cached  # our own write: the index in memory is the one on disk
                    else:
                        state = self._from_meta(folder, meta)
                except FileNotFoundError:
                    # A writer in another process replaced the generation between our two reads: read again.
                    if attempt + 1 == RELOAD_ATTEMPTS:
                        raise
                    continue
            state.stamp = stamp
            self._cache.put(username, state)
            return state
        raise AssertionError("unreachable")

    def _write(self, username: str, change: Any) -> Any:
        """Apply `change(state)` to the user's index and persist it (blocking; holds the inter-process lock)."""
        folder = self._folder(username)
        meta_path = folder / META_FILE
        outcome: list[Any] = []
        written: list[Path] = []
        states: list[_UserIndex] = []

        def save(current: Any) -> Any:
            state = self._current_for_write(username, folder, current)
            states.append(state)
            outcome.append(change(state))
            state.generation += 1
            index_file = f"index-{state.generation}.faiss"
            write_atomically(folder / index_file, faiss.serialize_index(state.index).tobytes())
            written.append(folder / index_file)
            return {
                "version": FORMAT_VERSION, "dimensions": self.dimensions, "generation": state.generation,
                "index_file": index_file, "next_id": state.next_id,
                "chunks": [[key, record_to_json(record)] for key, record in state.records.items()],
            }

        try:
            self._store.modify(meta_path, save, default=lambda: None)
        except BaseException:
            self._cache.forget(username)  # the in-memory copy may hold the change that was not saved
            for path in written:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise
        # Not stat()ed here: another process may write between our rename and a stat; the next read
        # parses chunks.json once and keeps this index if the generation is still ours.
        states[0].stamp = None
        self._cache.put(username, states[0])
        self._remove_orphans(folder, keep=written[0].name)
        return outcome[0]

    def _current_for_write(self, username: str, folder: Path, meta: Any) -> _UserIndex:
        cached = self._cache.get(username)
        if meta is None:
            state = self._empty()
        elif cached is not None and cached.generation == int(meta["generation"]):
            state = cached
        else:
            state = self._from_meta(folder, meta)
        return state

    @staticmethod
    def _remove_orphans(folder: Path, keep: str) -> None:
        for candidate in folder.glob("index-*.faiss"):
            if candidate.name != keep:
                with contextlib.suppress(FileNotFoundError):
                    candidate.unlink()

    # --- the port

    async def add(self, username: str, records: Sequence[ChunkRecord], vectors: Vectors) -> None:
        if len(records) != len(vectors):
            raise ValueError(f"{len(records)} records but {len(vectors)} vectors")
        if not records:
            return
        matrix = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(records), self.dimensions)

        def change(state: _UserIndex) -> None:
            # The same chunk id again replaces it: adding is idempotent.
            replaced = {record.chunk_id for record in records}
            stale = [key for key, record in state.records.items() if record.chunk_id in replaced]
            if stale:
                state.index.remove_ids(np.asarray(stale, dtype=np.int64))
                for key in stale:
                    del state.records[key]
            ids = np.arange(state.next_id, state.next_id + len(records), dtype=np.int64)
            state.index.add_with_ids(matrix, ids)
            state.records.update(zip(ids.tolist(), records, strict=True))
            state.next_id += len(records)

        async with self._lock(username):
            await asyncio.to_thread(self._write, username, change)

    async def search(self, username: str, vector: Vectors, top_k: int) -> list[ScoredChunk]:
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dimensions)

        def run() -> list[ScoredChunk]:
            state = self._current(username)
            if state.index.ntotal == 0 or top_k < 1:
                return []
            scores, ids = state.index.search(query, min(top_k, state.index.ntotal))
            return [
                ScoredChunk(state.records[key], float(score))
                for key, score in zip(ids[0].tolist(), scores[0].tolist(), strict=True) if key >= 0
            ]

        async with self._lock(username):
            return await asyncio.to_thread(run)

    async def delete_file(self, username: str, file_id: str) -> int:
        def change(state: _UserIndex) -> int:
            doomed = [key for key, record in state.records.items() if record.file_id == file_id]
            if doomed:
                state.index.remove_ids(np.asarray(doomed, dtype=np.int64))
                for key in doomed:
                    del state.records[key]
            return len(doomed)

        async with self._lock(username):
            if not await self.file_ids_unlocked(username) & {file_id}:
                return 0
            count: int = await asyncio.to_thread(self._write, username, change)
            return count

    async def file_ids_unlocked(self, username: str) -> set[str]:
        state = await asyncio.to_thread(self._current, username)
        return {record.file_id for record in state.records.values()}

    async def file_ids(self, username: str) -> set[str]:
        async with self._lock(username):
            return await self.file_ids_unlocked(username)

    async def delete_user(self, username: str) -> None:
        folder = self._folder(username)

        def remove() -> None:
            with self._store.locked(folder / META_FILE):
                # chunks.json first: once it is gone no process loads the index files it named.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / META_FILE)
                shutil.rmtree(folder, ignore_errors=True)

        async with self._lock(username):
            if folder.is_dir():
                await asyncio.to_thread(remove)
            self._cache.forget(username)

    async def aclose(self) -> None:
        self._cache.clear()
