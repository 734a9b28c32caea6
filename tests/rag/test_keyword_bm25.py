"""The per-user BM25 index: exact terms found, persisted, rebuilt on change, isolated, bounded in memory."""

from __future__ import annotations

from pathlib import Path

from backend.rag.keyword_bm25 import Bm25KeywordIndex
from backend.rag.ports import ChunkRecord, KeywordIndex
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout

TEXTS = [
    "The warranty covers parts and labour for two years.",
    "Order XQ-4471 shipped from the Lyon warehouse on 3 March.",
    "Invoices are payable within thirty days of receipt.",
    "The Lyon office closes at six on Fridays.",
]


def chunks(file_id: str, texts: list[str]) -> list[ChunkRecord]:
    records, offset = [], 0
    for index, text in enumerate(texts):
        records.append(ChunkRecord(f"{file_id}:{index}", file_id, f"{file_id}.txt", index, text, offset,
                                   offset + len(text)))
        offset += len(text)
    return records


def index_at(root: Path, cached_users: int = 16) -> Bm25KeywordIndex:
    return Bm25KeywordIndex(DataLayout(root), JsonStore(root), cached_users=cached_users)


async def test_an_exact_code_is_found_first(tmp_path: Path) -> None:
    index = index_at(tmp_path)
    assert isinstance(index, KeywordIndex)
    await index.add("alice", chunks("f1", TEXTS))

    hits = await index.search("alice", "where is order XQ-4471?", 3)

    assert hits[0].record.chunk_id == "f1:1"
    assert hits[0].score > 0


async def test_only_chunks_sharing_a_term_are_returned_best_first(tmp_path: Path) -> None:
    index = index_at(tmp_path)
    await index.add("alice", chunks("f1", TEXTS))

    hits = await index.search("alice", "Lyon office", 10)

    assert [hit.record.chunk_id for hit in hits] == ["f1:3", "f1:1"]
    assert hits[0].score > hits[1].score > 0
    assert await index.search("alice", "zebra quantum", 10) == []
    assert await index.search("alice", "the and of", 10) == []  # stopwords only


async def test_the_index_is_persisted_and_rebuilt_after_a_restart(tmp_path: Path) -> None:
    index = index_at(tmp_path)
    await index.add("alice", chunks("f1", TEXTS))
    before = [(hit.record, hit.score) for hit in await index.search("alice", "Lyon warehouse", 4)]

    after = [(hit.record, hit.score) for hit in await index_at(tmp_path).search("alice", "Lyon warehouse", 4)]

    assert after == before and len(before) == 2
    assert (tmp_path / "vectors" / "alice" / "bm25" / "chunks.json").is_file()


async def test_deleting_a_document_rebuilds_the_index_without_it(tmp_path: Path) -> None:
    index = index_at(tmp_path)
    await index.add("alice", chunks("f1", TEXTS[:2]))
    await index.add("alice", chunks("f2", TEXTS[2:]))

    assert await index.delete_file("alice", "f1") == 2

    assert await index.file_ids("alice") == {"f2"}
    assert await index.search("alice", "XQ-4471", 5) == []
    assert [hit.record.chunk_id for hit in await index.search("alice", "Lyon", 5)] == ["f2:1"]
    assert await index.delete_file("alice", "f1") == 0
    assert await index_at(tmp_path).file_ids("alice") == {"f2"}


async def test_adding_the_same_chunks_again_does_not_duplicate_them(tmp_path: Path) -> None:
    index = index_at(tmp_path)
    await index.add("alice", chunks("f1", TEXTS))
    await index.add("alice", chunks("f1", TEXTS))

    assert len(await index.search("alice", "Lyon", 10)) == 2


async def test_users_are_isolated_and_deleting_one_leaves_the_other(tmp_path: Path) -> None:
    index = index_at(tmp_path)
    await index.add("alice", chunks("f1", TEXTS))

    assert await index.search("bob", "Lyon", 10) == []
    assert await index.delete_file("bob", "f1") == 0
    await index.add("bob", chunks("b1", ["Bob keeps his notes about Lyon here."]))
    await index.delete_user("alice")

    assert await index.search("alice", "Lyon", 10) == []
    assert await index.file_ids("alice") == set()
    assert not (tmp_path / "vectors" / "alice" / "bm25").exists()
    assert [hit.record.chunk_id for hit in await index.search("bob", "Lyon", 10)] == ["b1:0"]


async def test_only_the_most_recent_users_indexes_stay_in_memory(tmp_path: Path) -> None:
    index = index_at(tmp_path, cached_users=2)
    for name in ("ann", "ben", "cat"):
        await index.add(name, chunks(name, [f"{name} writes about Lyon."]))
        await index.search(name, "Lyon", 1)

    assert index._cache.users() == ["ben", "cat"]
    # An evicted user's index is rebuilt from disk on their next search, with the same answer.
    assert [hit.record.chunk_id for hit in await index.search("ann", "Lyon", 1)] == ["ann:0"]
    assert index._cache.users() == ["cat", "ann"]
