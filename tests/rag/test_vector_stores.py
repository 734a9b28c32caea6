"""One suite for every VectorStore: FAISS, embedded Chroma, and Chroma over HTTP (a real `chroma run` on loopback).

Each test runs against all three with the network refused; vectors are small, seeded and normalised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from backend.rag.ports import ChunkRecord, ScoredChunk, VectorStore
from backend.rag.vector_chroma import ChromaVectorStore, collection_name
from backend.rag.vector_faiss import FaissVectorStore
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DIM = 16
CHROMA_BIN = Path(sys.executable).parent / "chroma"


def vectors(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def records(file_id: str, n: int, filename: str = "report.pdf") -> list[ChunkRecord]:
    return [
        ChunkRecord(
            chunk_id=f"{file_id}:{i}", file_id=file_id, filename=filename, chunk_index=i, text=f"{file_id} chunk {i}",
            char_start=i * 100, char_end=i * 100 + 90, page_start=i + 1 if i % 2 == 0 else None,
            page_end=i + 2 if i % 2 == 0 else None,
        )
        for i in range(n)
    ]


@dataclass
class StoreKind:
    name: str
    open: Callable[[], VectorStore]
    reopen_code: str
    """Python that builds the same store in a fresh process, as `store`."""


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real Chroma server on a loopback port, for the HttpClient path (how replicas share one Chroma)."""
    port = free_port()
    folder = tmp_path_factory.mktemp("chroma-server")
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    process = subprocess.Popen(
        [str(CHROMA_BIN), "run", "--path", str(folder), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("chroma run did not start")
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(params=["faiss", "chroma", "chroma-http"])
def kind(request: pytest.FixtureRequest, tmp_path: Path, no_network: list[Any]) -> Iterator[StoreKind]:
    if request.param == "faiss":
        yield StoreKind(
            "faiss", lambda: FaissVectorStore(DataLayout(tmp_path), JsonStore(tmp_path), DIM),
            "from backend.rag.vector_faiss import FaissVectorStore\n"
            "from backend.storage.json_store import JsonStore\nfrom backend.storage.layout import DataLayout\n"
            f"store = FaissVectorStore(DataLayout(Path({str(tmp_path)!r})), JsonStore(Path({str(tmp_path)!r})), {DIM})",
        )
    elif request.param == "chroma":
        folder = tmp_path / "chroma"
        yield StoreKind(
            "chroma", lambda: ChromaVectorStore.embedded(folder, DIM),
            "from backend.rag.vector_chroma import ChromaVectorStore\n"
            f"store = ChromaVectorStore.embedded(Path({str(folder)!r}), {DIM})",
        )
    else:
        port = request.getfixturevalue("chroma_server")
        yield StoreKind(
            "chroma-http", lambda: ChromaVectorStore.remote("127.0.0.1", port, DIM),
            "from backend.rag.vector_chroma import ChromaVectorStore\n"
            f"store = ChromaVectorStore.remote('127.0.0.1', {port}, {DIM})",
        )
    assert no_network == []


def user() -> str:
    """A fresh username per test: the HTTP Chroma server is shared by the module."""
    return f"user-{uuid.uuid4().hex[:8]}"


def expected_order(matrix: np.ndarray, query: np.ndarray, top_k: int) -> list[int]:
    return [int(i) for i in np.argsort(-(matrix @ query), kind="stable")[:top_k]]


async def test_search_returns_the_nearest_chunks_best_first_with_cosine_scores(kind: StoreKind) -> None:
    store, alice = kind.open(), user()
    chunks, matrix = records("f1", 12), vectors(12, seed=1)
    await store.add(alice, chunks, matrix)
    query = matrix[5] * 0.8 + matrix[2] * 0.2
    query = query / np.linalg.norm(query)

    hits = await store.search(alice, query, 4)

    assert [hit.record for hit in hits] == [chunks[i] for i in expected_order(matrix, query, 4)]
    assert hits[0].record == chunks[5]
    assert [hit.score for hit in hits] == pytest.approx([float(matrix[i] @ query) for i in
                                                         expected_order(matrix, query, 4)], abs=1e-4)
    assert (await store.search(alice, matrix[7], 1))[0].score == pytest.approx(1.0, abs=1e-4)


async def test_every_citation_field_survives_the_round_trip(kind: StoreKind) -> None:
    store, alice = kind.open(), user()
    chunk = ChunkRecord(chunk_id="doc:3", file_id="doc", filename="Ünïcode rapport (final).pdf", chunk_index=3,
                        text="Line one\nline two — ✓", char_start=1234, char_end=1256, page_start=7, page_end=8)
    no_pages = ChunkRecord(chunk_id="doc2:0", file_id="doc2", filename="notes.md", chunk_index=0, text="plain",
                           char_start=0, char_end=5)
    matrix = vectors(2, seed=2)
    await store.add(alice, [chunk, no_pages], matrix)

    assert (await store.search(alice, matrix[0], 1))[0].record == chunk
    assert (await store.search(alice, matrix[1], 1))[0].record == no_pages


async def test_top_k_larger_than_the_collection_returns_everything_and_empty_stores_return_nothing(
    kind: StoreKind,
) -> None:
    store, alice = kind.open(), user()
    assert await store.search(alice, vectors(1, 3)[0], 5) == []
    await store.add(alice, records("f1", 3), vectors(3, seed=3))

    assert len(await store.search(alice, vectors(1, 4)[0], 50)) == 3
    assert await store.file_ids(alice) == {"f1"}


async def test_adding_the_same_chunk_ids_again_replaces_them(kind: StoreKind) -> None:
    store, alice = kind.open(), user()
    chunks = records("f1", 4)
    await store.add(alice, chunks, vectors(4, seed=5))
    newer = vectors(4, seed=6)

    await store.add(alice, chunks, newer)

    hits = await store.search(alice, newer[1], 10)
    assert len(hits) == 4
    assert hits[0].record == chunks[1] and hits[0].score == pytest.approx(1.0, abs=1e-4)


async def test_deleting_a_document_removes_exactly_its_chunks_and_it_can_be_added_again(kind: StoreKind) -> None:
    store, alice = kind.open(), user()
    first, second = records("f1", 5), records("f2", 3, filename="other.txt")
    first_vectors, second_vectors = vectors(5, seed=7), vectors(3, seed=8)
    await store.add(alice, first, first_vectors)
    await store.add(alice, second, second_vectors)

    assert await store.delete_file(alice, "f1") == 5

    assert await store.file_ids(alice) == {"f2"}
    for vector in first_vectors:
        assert {hit.record.file_id for hit in await store.search(alice, vector, 10)} == {"f2"}
    assert await store.delete_file(alice, "f1") == 0
    assert await store.delete_file(alice, "never-there") == 0
    await store.add(alice, first, first_vectors)
    assert (await store.search(alice, first_vectors[2], 1))[0].record == first[2]
    assert await store.file_ids(alice) == {"f1", "f2"}


async def test_users_never_see_or_touch_each_others_chunks(kind: StoreKind) -> None:
    store, alice, bob = kind.open(), user(), user()
    matrix = vectors(4, seed=9)
    await store.add(alice, records("secret", 4), matrix)

    assert await store.search(bob, matrix[0], 10) == []
    assert await store.file_ids(bob) == set()
    assert await store.delete_file(bob, "secret") == 0
    await store.delete_user(bob)
    assert len(await store.search(alice, matrix[0], 10)) == 4

    await store.add(bob, records("bobs", 2), vectors(2, seed=10))
    assert {hit.record.file_id for hit in await store.search(alice, matrix[0], 10)} == {"secret"}
    assert {hit.record.file_id for hit in await store.search(bob, matrix[0], 10)} == {"bobs"}


async def test_deleting_a_user_removes_all_of_theirs_and_only_theirs(kind: StoreKind) -> None:
    store, alice, bob = kind.open(), user(), user()
    await store.add(alice, records("a1", 3), vectors(3, seed=11))
    await store.add(alice, records("a2", 2), vectors(2, seed=12))
    await store.add(bob, records("b1", 2), vectors(2, seed=13))

    await store.delete_user(alice)

    assert await store.file_ids(alice) == set()
    assert await store.search(alice, vectors(1, 14)[0], 10) == []
    assert await store.file_ids(bob) == {"b1"}
    await store.delete_user(alice)  # deleting again is harmless
    await store.add(alice, records("a3", 1), vectors(1, seed=15))
    assert await store.file_ids(alice) == {"a3"}


async def test_a_second_replica_on_the_same_data_sees_the_firsts_adds_and_deletes(kind: StoreKind) -> None:
    first, second, alice = kind.open(), kind.open(), user()
    matrix = vectors(3, seed=19)
    await first.add(alice, records("f1", 3), matrix)
    assert [hit.record.chunk_id for hit in await second.search(alice, matrix[0], 1)] == ["f1:0"]

    await first.delete_user(alice)  # the second still holds whatever it cached about alice

    assert await second.search(alice, matrix[0], 5) == []
    await second.add(alice, records("f2", 1), matrix[:1])
    assert await first.file_ids(alice) == {"f2"}
    assert [hit.record.chunk_id for hit in await first.search(alice, matrix[0], 5)] == ["f2:0"]


def _results(hits: list[ScoredChunk]) -> list[list[Any]]:
    return [[hit.record.chunk_id, round(hit.score, 5), hit.record.page_start, hit.record.text] for hit in hits]


async def test_a_restart_gives_identical_results(kind: StoreKind) -> None:
    """The same queries in a fresh process (the store reopened from disk or server) give the same answers."""
    store, alice = kind.open(), user()
    await store.add(alice, records("f1", 30), vectors(30, seed=16))
    await store.add(alice, records("f2", 10), vectors(10, seed=17))
    await store.delete_file(alice, "f2")
    queries = vectors(5, seed=18)
    before = [_results(await store.search(alice, query, 5)) for query in queries]
    await store.aclose()

    probe = (
        "import asyncio, json, socket\nfrom pathlib import Path\nimport numpy as np\n"
        "def guard(sock, address):\n"
        "    if isinstance(address, tuple) and address[0] not in ('127.0.0.1', 'localhost', '::1'):\n"
        "        raise OSError('network access attempted: %r' % (address,))\n"
        "    return real(sock, address)\n"
        "real = socket.socket.connect\nsocket.socket.connect = guard\n"
        f"{kind.reopen_code}\n"
        f"queries = np.asarray({queries.tolist()!r}, dtype=np.float32)\n"
        "async def main():\n"
        f"    out = [[[h.record.chunk_id, round(h.score, 5), h.record.page_start, h.record.text] "
        f"for h in await store.search({alice!r}, q, 5)] for q in queries]\n"
        f"    return out, sorted(await store.file_ids({alice!r}))\n"
        "print(json.dumps(asyncio.run(main())))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    after, file_ids = json.loads(result.stdout.strip().splitlines()[-1])
    assert after == before
    assert file_ids == ["f1"]
    assert all(len(hits) == 5 for hits in before)


def test_chroma_collection_names_are_valid_and_distinct_per_user() -> None:
    names = {collection_name(name) for name in ("alice", "Alice", "alice.", "a" * 64, "bob_-.x")}
    assert len(names) == 5
    assert all(name.startswith("user-") and len(name) == 53 and name.replace("-", "").isalnum() for name in names)


def test_chroma_never_runs_its_default_embedding_function_nor_downloads_a_model(tmp_path: Path) -> None:
    """A fresh process whose home is empty: after every store operation no ONNX model folder exists, and
    Chroma's default embedding function was never called (it would download all-MiniLM-L6-v2 on first use)."""
    probe = f"""
import asyncio, json, socket
from pathlib import Path
import numpy as np
attempts = []
real = socket.socket.connect
def guard(sock, address):
    if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost", "::1"):
        attempts.append(repr(address))
        raise OSError("no network")
    return real(sock, address)
socket.socket.connect = guard
from chromadb.utils.embedding_functions import onnx_mini_lm_l6_v2 as onnx
calls = []
def refuse(self, *args, **kwargs):
    calls.append("called")
    raise RuntimeError("Chroma's default embedding function ran")
onnx.ONNXMiniLM_L6_V2.__call__ = refuse
onnx.ONNXMiniLM_L6_V2._download_model_if_not_exists = refuse
from backend.rag.ports import ChunkRecord
from backend.rag.vector_chroma import ChromaVectorStore
async def main():
    store = ChromaVectorStore.embedded(Path({str(tmp_path / "chroma")!r}), 4)
    record = ChunkRecord("f:0", "f", "a.txt", 0, "text", 0, 4)
    await store.add("alice", [record], np.asarray([[1, 0, 0, 0]], dtype=np.float32))
    hits = await store.search("alice", np.asarray([1, 0, 0, 0], dtype=np.float32), 3)
    ids = await store.file_ids("alice")
    removed = await store.delete_file("alice", "f")
    await store.delete_user("alice")
    return [hit.record.chunk_id for hit in hits], sorted(ids), removed
print(json.dumps({{"result": asyncio.run(main()), "attempts": attempts, "calls": calls,
                  "download_path": str(onnx.ONNXMiniLM_L6_V2.DOWNLOAD_PATH)}}))
"""
    env = {**os.environ, "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)

    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["result"] == [["f:0"], ["f"], 1]
    assert (outcome["attempts"], outcome["calls"]) == ([], [])
    assert outcome["download_path"].startswith(str(tmp_path))
    assert not Path(outcome["download_path"]).exists()
    assert not (tmp_path / ".cache").exists()
