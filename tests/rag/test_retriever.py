"""HybridRetriever on the real embedder, FAISS and BM25: fusion, the minimum score, dense-only mode, scoping."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.rag.embedder_sentence_transformers import SentenceTransformerEmbedder
from backend.rag.factory import build_keyword_index, build_vector_store
from backend.rag.keyword_bm25 import Bm25KeywordIndex
from backend.rag.ports import ChunkRecord, DocumentRetriever, ScoredChunk
from backend.rag.retriever import RRF_K, HybridRetriever, reciprocal_rank_fusion
from backend.rag.vector_faiss import FaissVectorStore
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout

PAGES = [
    "Our warranty covers parts and labour for two years from the date of purchase.",
    "Replacement part number ZK-88812 fits every model sold after 2019.",
    "Invoices must be paid within thirty days; late payments incur a fee of two percent per month.",
    "The head office is in Lyon and is open from nine to six on weekdays.",
    "To reset the device, hold the power button for ten seconds until the light blinks.",
]


def record(chunk_id: str, file_id: str = "f") -> ChunkRecord:
    return ChunkRecord(chunk_id, file_id, "a.txt", 0, chunk_id, 0, len(chunk_id))


def test_fusion_adds_reciprocal_ranks_and_keeps_first_appearance_on_ties() -> None:
    a, b, c, d = (ScoredChunk(record(name), 0.0) for name in "abcd")

    fused = reciprocal_rank_fusion([[a, b, c], [c, d, a]], top_k=3)

    assert [hit.record.chunk_id for hit in fused] == ["a", "c", "b"]
    assert [hit.score for hit in fused] == pytest.approx(
        [1 / (RRF_K + 1) + 1 / (RRF_K + 3), 1 / (RRF_K + 3) + 1 / (RRF_K + 1), 1 / (RRF_K + 2)]
    )
    tie = reciprocal_rank_fusion([[b], [d]], top_k=5)
    assert [hit.record.chunk_id for hit in tie] == ["b", "d"]
    assert reciprocal_rank_fusion([[], []], top_k=3) == []


@pytest.fixture
async def corpus(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> tuple[FaissVectorStore, Bm25KeywordIndex]:
    vectors = FaissVectorStore(DataLayout(tmp_path), JsonStore(tmp_path), embedder.dimensions)
    keywords = Bm25KeywordIndex(DataLayout(tmp_path), JsonStore(tmp_path))
    records = [
        ChunkRecord(f"manual:{page}", "manual", "manual.pdf", page, text, page * 200, page * 200 + len(text),
                    page_start=page + 1, page_end=page + 1)
        for page, text in enumerate(PAGES)
    ]
    await vectors.add("alice", records, await embedder.embed([r.text for r in records]))
    await keywords.add("alice", records)
    return vectors, keywords


async def test_a_question_finds_the_chunk_and_page_that_answer_it(
    embedder: SentenceTransformerEmbedder, corpus: tuple[FaissVectorStore, Bm25KeywordIndex]
) -> None:
    retriever = HybridRetriever(embedder, *corpus, min_score=0.2, hybrid=True)
    assert isinstance(retriever, DocumentRetriever)

    hits = await retriever.search("alice", "How long do I have to pay an invoice?", 3)

    assert hits[0].record.chunk_id == "manual:2"
    assert (hits[0].record.page_start, hits[0].record.filename) == (3, "manual.pdf")
    # only chunks above the minimum cosine or sharing a keyword: not all of the corpus, but the best one
    assert len(hits) >= 1
    assert len(hits) <= 3
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


async def test_hybrid_finds_an_exact_part_number_through_the_keyword_index(
    embedder: SentenceTransformerEmbedder, corpus: tuple[FaissVectorStore, Bm25KeywordIndex]
) -> None:
    vectors, keywords = corpus
    # A minimum cosine no chunk reaches: dense alone finds nothing, the keyword hit still counts.
    strict_dense = HybridRetriever(embedder, vectors, keywords, min_score=0.99, hybrid=False)
    strict_hybrid = HybridRetriever(embedder, vectors, keywords, min_score=0.99, hybrid=True)

    assert await strict_dense.search("alice", "ZK-88812", 3) == []
    hits = await strict_hybrid.search("alice", "ZK-88812", 3)
    assert [hit.record.chunk_id for hit in hits] == ["manual:1"]
    assert hits[0].score == pytest.approx(1 / (RRF_K + 1))


async def test_dense_only_scores_are_cosines_above_the_minimum(
    embedder: SentenceTransformerEmbedder, corpus: tuple[FaissVectorStore, Bm25KeywordIndex]
) -> None:
    retriever = HybridRetriever(embedder, *corpus, min_score=0.3, hybrid=False)
    question = "Where is the head office?"

    hits = await retriever.search("alice", question, 5)

    query, *pages = await embedder.embed([question, *PAGES])
    cosines = {f"manual:{page}": float(query @ vector) for page, vector in enumerate(pages)}
    expected = {key: value for key, value in cosines.items() if value >= 0.3}
    assert hits[0].record.chunk_id == "manual:3"
    assert all(hit.score >= 0.3 for hit in hits)
    assert {hit.record.chunk_id: hit.score for hit in hits} == pytest.approx(expected, abs=1e-4)
    assert 0 < len(hits) < len(PAGES)


async def test_another_user_gets_nothing_and_blank_queries_cost_nothing(
    embedder: SentenceTransformerEmbedder, corpus: tuple[FaissVectorStore, Bm25KeywordIndex]
) -> None:
    retriever = HybridRetriever(embedder, *corpus, min_score=0.0, hybrid=True)

    assert await retriever.search("bob", "How long do I have to pay an invoice?", 5) == []
    assert await retriever.search("alice", "   ", 5) == []
    assert await retriever.search("alice", "invoice", 0) == []


async def test_the_factory_builds_the_chosen_store_and_the_keyword_index(tmp_path: Path) -> None:
    from backend.config import load_settings

    faiss_settings = load_settings(data_dir=tmp_path)
    chroma_settings = load_settings(data_dir=tmp_path, vector_db_type="chroma")

    assert build_vector_store(faiss_settings, 8).name == "faiss"
    assert build_vector_store(chroma_settings, 8).name == "chroma"
    assert (tmp_path / "chroma").is_dir()
    assert isinstance(build_keyword_index(faiss_settings), Bm25KeywordIndex)
