"""The document service on the real adapters (embedder, FAISS or Chroma, BM25), wired by the composition root."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from backend.bootstrap import build_document_service
from backend.config import Settings, load_settings
from backend.rag.document_service import DocumentService, IncomingFile
from backend.rag.embedder_sentence_transformers import SentenceTransformerEmbedder
from backend.rag.factory import RagComponents, build_keyword_index, build_vector_store
from backend.rag.retriever import HybridRetriever
from backend.storage.document_repository import DocumentRepository
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout
from tests.rag import sample_files


def _settings(root: Path, store: str) -> Settings:
    return load_settings(data_dir=root, vector_db_type=store)


def _components(settings: Settings, embedder: SentenceTransformerEmbedder) -> RagComponents:
    """What a (re)start builds; the embedder is the session's, loaded once."""
    vectors = build_vector_store(settings, embedder.dimensions)
    keywords = build_keyword_index(settings)
    retriever = HybridRetriever(embedder, vectors, keywords, min_score=settings.rag_min_score, hybrid=True)
    return RagComponents(embedder, vectors, keywords, retriever)


async def _upload(service: DocumentService, root: Path, name: str, data: bytes) -> str:
    folder = DataLayout(root).incoming_uploads_dir
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".upload-test.part"
    path.write_bytes(data)
    try:
        incoming = IncomingFile(path=path, filename=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())
        return (await service.ingest("alice", incoming)).document.file_id
    finally:
        path.unlink(missing_ok=True)


async def _no_account_missing(username: str) -> bool:
    return True


@pytest.mark.parametrize("store", ["faiss", "chroma"])
async def test_a_record_lost_in_a_crash_is_swept_from_the_real_stores_at_the_next_start(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, store: str
) -> None:
    settings = _settings(tmp_path, store)
    rag = _components(settings, embedder)
    service = build_document_service(settings, rag)
    kept = await _upload(service, tmp_path, "facts.pdf", sample_files.pdf_bytes())
    lost = await _upload(service, tmp_path, "fleet.docx", sample_files.docx_bytes())
    top = (await rag.retriever.search("alice", "Which submarine cable links Reykjavik and Galway?", 4))[0]
    assert (top.record.file_id, top.record.page_start, top.record.page_end) == (kept, 3, 3)
    await DocumentRepository(JsonStore(tmp_path), DataLayout(tmp_path)).remove("alice", lost)  # the crash
    await rag.vector_store.aclose()

    restarted = _components(settings, embedder)
    report = await build_document_service(settings, restarted).repair(_no_account_missing)
    assert report.orphan_vectors == report.orphan_keywords == report.orphan_folders == [f"alice/{lost}"]
    assert await restarted.vector_store.file_ids("alice") == await restarted.keyword_index.file_ids("alice") == {kept}
    hits = await restarted.retriever.search("alice", "Northwind ferry ships Borealis 2004", 10)
    assert all(hit.record.file_id == kept for hit in hits)
    again = (await restarted.retriever.search("alice", "Which submarine cable links Reykjavik and Galway?", 4))[0]
    assert again.record == top.record  # the fused score moves: the corpus lost a document
    await restarted.vector_store.aclose()


@pytest.mark.parametrize("store", ["faiss", "chroma"])
async def test_delete_leaves_no_vector_or_keyword_entry_in_the_real_stores(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, store: str
) -> None:
    settings = _settings(tmp_path, store)
    rag = _components(settings, embedder)
    service = build_document_service(settings, rag)
    file_id = await _upload(service, tmp_path, "cities.csv", sample_files.CSV_TEXT.encode())
    assert await rag.vector_store.file_ids("alice") == {file_id}
    await service.delete_document("alice", file_id)
    assert await rag.vector_store.file_ids("alice") == await rag.keyword_index.file_ids("alice") == set()
    assert await rag.retriever.search("alice", "City117 population", 5) == []
    again = await _upload(service, tmp_path, "cities.csv", sample_files.CSV_TEXT.encode())
    assert again != file_id and await rag.vector_store.file_ids("alice") == {again}
    await rag.vector_store.aclose()
