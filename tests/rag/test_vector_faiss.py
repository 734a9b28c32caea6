"""The FAISS store's files: atomic generations, crash leftovers, other processes' writes, a changed model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from backend.rag.ports import ChunkRecord
from backend.rag.vector_faiss import FaissVectorStore, VectorIndexMismatch
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout

DIM = 8


def vectors(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def records(file_id: str, n: int) -> list[ChunkRecord]:
    return [ChunkRecord(f"{file_id}:{i}", file_id, f"{file_id}.txt", i, f"text {i}", i * 10, i * 10 + 9)
            for i in range(n)]


def open_store(root: Path, dimensions: int = DIM) -> FaissVectorStore:
    return FaissVectorStore(DataLayout(root), JsonStore(root), dimensions)


def folder(root: Path, username: str = "alice") -> Path:
    return root / "vectors" / username / "faiss"


async def test_each_write_is_a_new_generation_and_the_old_index_file_goes(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    await store.add("alice", records("f1", 3), vectors(3, 1))
    await store.add("alice", records("f2", 2), vectors(2, 2))

    meta = json.loads((folder(tmp_path) / "chunks.json").read_text())
    assert (meta["generation"], meta["index_file"], meta["next_id"], len(meta["chunks"])) == (2, "index-2.faiss", 5, 5)
    assert sorted(path.name for path in folder(tmp_path).iterdir() if not path.name.endswith(".lock")) == [
        "chunks.json", "index-2.faiss"
    ]
    assert oct(os.stat(folder(tmp_path) / "index-2.faiss").st_mode & 0o777) == "0o600"


async def test_an_index_file_left_by_a_crash_before_its_metadata_is_ignored_then_removed(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    matrix = vectors(3, 3)
    await store.add("alice", records("f1", 3), matrix)
    # A crash after writing the next generation's index but before chunks.json named it:
    (folder(tmp_path) / "index-2.faiss").write_bytes((folder(tmp_path) / "index-1.faiss").read_bytes()[:40])

    reopened = open_store(tmp_path)
    assert [hit.record.chunk_id for hit in await reopened.search("alice", matrix[1], 1)] == ["f1:1"]
    await reopened.add("alice", records("f2", 1), vectors(1, 4))

    names = sorted(path.name for path in folder(tmp_path).glob("index-*.faiss"))
    assert names == ["index-2.faiss"]
    assert await open_store(tmp_path).file_ids("alice") == {"f1", "f2"}


async def test_a_write_by_another_process_is_seen_by_the_next_search(tmp_path: Path) -> None:
    worker_a, worker_b = open_store(tmp_path), open_store(tmp_path)  # two uvicorn workers, one DATA_DIR
    matrix = vectors(2, 5)
    await worker_a.add("alice", records("f1", 1), matrix[:1])
    assert await worker_b.file_ids("alice") == {"f1"}

    await worker_b.add("alice", records("f2", 1), matrix[1:])
    await worker_b.delete_file("alice", "f1")

    assert await worker_a.file_ids("alice") == {"f2"}
    assert [hit.record.chunk_id for hit in await worker_a.search("alice", matrix[1], 5)] == ["f2:0"]
    await worker_a.add("alice", records("f3", 1), vectors(1, 6))  # a's write builds on b's, dropping nothing
    assert await worker_b.file_ids("alice") == {"f2", "f3"}


async def test_an_index_written_for_other_dimensions_is_refused_not_misread(tmp_path: Path) -> None:
    await open_store(tmp_path).add("alice", records("f1", 1), vectors(1, 7))

    with pytest.raises(VectorIndexMismatch) as caught:
        await open_store(tmp_path, dimensions=16).search("alice", np.ones(16, dtype=np.float32) / 4, 1)
    assert "changed EMBEDDING_MODEL?" in str(caught.value)


async def test_a_mismatch_between_records_and_vectors_is_refused_before_writing(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    with pytest.raises(ValueError, match="2 records but 1 vectors"):
        await store.add("alice", records("f1", 2), vectors(1, 8))
    assert not folder(tmp_path).exists()


async def test_deleting_a_user_removes_their_folder(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    await store.add("alice", records("f1", 2), vectors(2, 9))

    await store.delete_user("alice")

    assert not folder(tmp_path).exists()
    assert await open_store(tmp_path).file_ids("alice") == set()


async def test_only_the_most_recent_users_indexes_stay_in_memory(tmp_path: Path) -> None:
    store = FaissVectorStore(DataLayout(tmp_path), JsonStore(tmp_path), DIM, cached_users=2)
    matrix = vectors(3, 10)
    for number, name in enumerate(("ann", "ben", "cat")):
        await store.add(name, records(name, 1), matrix[number : number + 1])

    assert store._cache.users() == ["ben", "cat"]
    # An evicted user's index is read back from disk at their next search, with the same answer.
    assert [hit.record.chunk_id for hit in await store.search("ann", matrix[0], 1)] == ["ann:0"]
    assert store._cache.users() == ["cat", "ann"]
