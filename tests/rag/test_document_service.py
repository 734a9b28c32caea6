"""The document service on in-memory ports: idempotent uploads, refusals that leave nothing, delete, repair."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from backend.per_user_limits import PerUserLimit
from backend.rag.document_errors import (
    CorruptFile,
    DocumentNotFound,
    EmptyFile,
    EncryptedFile,
    TooManyDocuments,
    UnsafeFile,
    UnsupportedFileType,
)
from backend.rag.document_service import DocumentService, DocumentSettings, IncomingFile
from backend.rag.parsing import DocumentParser, ParseLimits
from backend.service_errors import ServiceError, TooManyRequests
from backend.storage.document_repository import DocumentRepository
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout
from tests.rag import sample_files
from tests.rag.fake_rag import HashingEmbedder, MemoryKeywordIndex, MemoryVectorStore


class Harness:
    def __init__(self, root: Path, max_documents: int = 50) -> None:
        self.root = root
        self.layout = DataLayout(root)
        self.embedder = HashingEmbedder()
        self.vectors = MemoryVectorStore()
        self.keywords = MemoryKeywordIndex()
        self.repository = DocumentRepository(JsonStore(root), self.layout)
        self.service = self.build(max_documents)

    def build(self, max_documents: int = 50) -> DocumentService:
        return DocumentService(
            repository=self.repository,
            parser=DocumentParser(ParseLimits(timeout_s=20, memory_mb=1024, max_chars=200_000, group_chars=1000), 2),
            embedder=self.embedder, vector_store=self.vectors, keyword_index=self.keywords, layout=self.layout,
            settings=DocumentSettings(chunk_size=1000, chunk_overlap=200, max_documents_per_user=max_documents),
            ingestions=PerUserLimit("document uploads", 1),
        )

    def incoming(self, name: str, data: bytes) -> IncomingFile:
        folder = self.layout.incoming_uploads_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f".upload-{hashlib.sha256(name.encode() + data).hexdigest()[:12]}.part"
        path.write_bytes(data)
        return IncomingFile(path=path, filename=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())

    async def upload(self, user: str, name: str, data: bytes):  # type: ignore[no-untyped-def]
        incoming = self.incoming(name, data)
        try:
            return await self.service.ingest(user, incoming)
        finally:
            incoming.path.unlink(missing_ok=True)

    def tree(self) -> list[str]:
        return sorted(str(path.relative_to(self.root)) for path in self.root.rglob("*") if path.is_file())


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


async def test_an_upload_stores_the_file_chunks_vectors_keywords_and_a_ready_record(harness: Harness) -> None:
    result = await harness.upload("alice", "Facts Report (final).pdf", sample_files.pdf_bytes())
    record = result.document
    assert result.created and record.status == "ready" and record.filename == "Facts_Report_final.pdf"
    assert (record.kind, record.pages, record.size) == ("pdf", 4, len(sample_files.pdf_bytes()))
    assert record.sha256 == hashlib.sha256(sample_files.pdf_bytes()).hexdigest()
    stored = harness.layout.document_dir("alice", record.file_id) / record.filename
    assert stored.read_bytes() == sample_files.pdf_bytes()
    assert len(harness.vectors.rows["alice"]) == len(harness.keywords.rows["alice"]) == record.chunks > 1
    assert harness.tree() == sorted([
        f"files/alice/{record.file_id}/{record.filename}",
        "files/alice/documents.json",
        "files/alice/documents.json.lock",
    ])


async def test_the_same_content_again_returns_the_existing_document_without_parsing(harness: Harness) -> None:
    first = await harness.upload("alice", "a.txt", b"The same words twice over.")
    calls = harness.embedder.calls
    again = await harness.upload("alice", "renamed.txt", b"The same words twice over.")
    assert (again.created, again.document) == (False, first.document)
    assert harness.embedder.calls == calls
    other_user = await harness.upload("bob", "a.txt", b"The same words twice over.")
    assert other_user.created and other_user.document.file_id != first.document.file_id


async def test_concurrent_uploads_of_the_same_content_make_one_document(harness: Harness) -> None:
    results = await asyncio.gather(*(harness.upload("alice", f"n{i}.md", b"# Same\n\nbody text") for i in range(3)))
    assert sorted(result.created for result in results) == [False, False, True]
    assert len({result.document.file_id for result in results}) == 1
    assert len(await harness.repository.list_for("alice")) == 1
    assert len(list(harness.layout.user_files_dir("alice").glob("file-*"))) == 1


async def test_delete_removes_file_vectors_keywords_and_metadata_and_the_content_can_come_back(
    harness: Harness,
) -> None:
    first = (await harness.upload("alice", "cities.csv", sample_files.CSV_TEXT.encode())).document
    await harness.upload("alice", "keep.txt", b"another document stays")
    await harness.service.delete_document("alice", first.file_id)
    assert first.file_id not in await harness.vectors.file_ids("alice")
    assert first.file_id not in await harness.keywords.file_ids("alice")
    assert not harness.layout.document_dir("alice", first.file_id).exists()
    assert [r.filename for r in await harness.repository.list_for("alice")] == ["keep.txt"]
    with pytest.raises(DocumentNotFound):
        await harness.service.get_document("alice", first.file_id)
    again = await harness.upload("alice", "cities.csv", sample_files.CSV_TEXT.encode())
    assert again.created and again.document.file_id != first.file_id and again.document.chunks == first.chunks


async def test_another_users_document_answers_exactly_like_a_missing_one(harness: Harness) -> None:
    record = (await harness.upload("alice", "a.txt", b"alice's secret")).document
    errors = []
    for file_id in (record.file_id, "file-doesnotexist"):
        for call in (harness.service.get_document, harness.service.delete_document):
            with pytest.raises(DocumentNotFound) as caught:
                await call("bob", file_id)
            errors.append((caught.value.status, caught.value.message.replace(file_id, "ID")))
    assert len(set(errors)) == 1 and errors[0][0] == 404
    assert (await harness.service.get_document("alice", record.file_id)).status == "ready"
    assert not harness.layout.user_files_dir("bob").exists()


BAD_UPLOADS = [
    ("empty.pdf", b"", EmptyFile),
    ("photo.pdf", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, UnsupportedFileType),
    ("report.txt", sample_files.pdf_bytes(), UnsupportedFileType),
    ("tool.exe", b"MZ\x90\x00", UnsupportedFileType),
    ("broken.pdf", b"%PDF-1.4\ngarbage", CorruptFile),
    ("locked.pdf", sample_files.encrypted_pdf_bytes(), EncryptedFile),
    ("bomb.docx", sample_files.zip_bomb_docx_bytes(), UnsafeFile),
    ("xxe.docx", sample_files.dtd_docx_bytes(), UnsafeFile),
    ("notes.docx", sample_files.plain_zip_bytes(), UnsupportedFileType),
    ("data.json", b"{not json", UnsupportedFileType),
    ("fake.sqlite", b"SQLite format 3\x00" + b"\x07" * 2000, CorruptFile),
]


@pytest.mark.parametrize(("name", "data", "error"), BAD_UPLOADS, ids=[case[0] for case in BAD_UPLOADS])
async def test_a_refused_upload_leaves_nothing_behind(
    harness: Harness, name: str, data: bytes, error: type[ServiceError]
) -> None:
    with pytest.raises(error) as caught:
        await harness.upload("alice", name, data)
    assert 400 <= caught.value.status < 500 and caught.value.message
    assert harness.tree() == []
    assert harness.vectors.rows == {} and harness.keywords.rows == {}


async def test_a_failure_after_the_reservation_rolls_everything_back(harness: Harness) -> None:
    harness.vectors.fail_next_add = True
    with pytest.raises(RuntimeError, match="vector store down"):
        await harness.upload("alice", "a.txt", b"some text to index")
    assert await harness.repository.list_for("alice") == []
    assert [p.name for p in harness.layout.user_files_dir("alice").iterdir() if p.is_dir()] == []
    assert harness.keywords.rows.get("alice", {}) == {}


async def test_the_number_of_documents_per_user_is_bounded(tmp_path: Path) -> None:
    harness = Harness(tmp_path, max_documents=2)
    for n in range(2):
        await harness.upload("alice", f"{n}.txt", f"document number {n}".encode())
    before = harness.tree()
    with pytest.raises(TooManyDocuments) as caught:
        await harness.upload("alice", "3.txt", b"one too many")
    assert caught.value.status == 409 and harness.tree() == before
    assert (await harness.upload("alice", "0.txt", b"document number 0")).created is False
    assert (await harness.upload("bob", "3.txt", b"one too many")).created


def test_one_user_cannot_hold_more_ingestion_slots_than_their_share(harness: Harness) -> None:
    with harness.service.ingestion_slot("alice"):
        with pytest.raises(TooManyRequests) as caught, harness.service.ingestion_slot("alice"):
            pass
        assert caught.value.headers["Retry-After"] == "2"
        with harness.service.ingestion_slot("bob"):
            pass
    with harness.service.ingestion_slot("alice"):
        pass


async def test_listing_pages_through_own_documents_with_the_total(harness: Harness) -> None:
    ids = [(await harness.upload("alice", f"{n}.txt", f"text {n}".encode())).document.file_id for n in range(5)]
    await harness.upload("bob", "b.txt", b"bob's")
    page = await harness.service.list_documents("alice", page=2, page_size=2)
    assert page.total == 5 and [record.file_id for record in page.documents] == ids[2:4]
    assert (await harness.service.list_documents("alice", page=9, page_size=2)).documents == []
    assert (await harness.service.list_documents("carol", page=1, page_size=2)).total == 0


async def test_repair_finishes_interrupted_work_and_sweeps_orphans(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    kept = (await harness.upload("alice", "kept.txt", b"this one is fine")).document
    deleting = (await harness.upload("alice", "deleting.txt", b"delete was interrupted")).document
    await harness.repository.mark_deleting("alice", deleting.file_id)
    stale = (await harness.upload("alice", "stale.txt", b"upload was interrupted")).document
    await harness.repository.mark("alice", stale.file_id, "processing")

    def age(records):  # type: ignore[no-untyped-def]
        records[stale.file_id] = replace(records[stale.file_id], uploaded_at="2020-01-01T00:00:00+00:00")

    await harness.repository._file("alice").change(age)
    orphan = (await harness.upload("alice", "orphan.txt", b"record lost in a crash")).document
    await harness.repository.remove("alice", orphan.file_id)
    stray = harness.layout.user_files_dir("alice") / "file-stray"
    stray.mkdir()
    (stray / "x.txt").write_text("left by a crash")
    old_upload = harness.layout.incoming_uploads_dir / ".upload-old.part"
    old_upload.write_bytes(b"partial")
    os.utime(old_upload, (time.time() - 7200, time.time() - 7200))
    young_upload = harness.layout.incoming_uploads_dir / ".upload-young.part"
    young_upload.write_bytes(b"being received by another worker")
    gone_user = (await harness.upload("ghost", "g.txt", b"account deleted mid-way")).document

    async def account_exists(username: str) -> bool:
        return username != "ghost"

    with caplog.at_level(logging.WARNING):
        report = await harness.build().repair(account_exists)
    assert sorted(report.purged_documents) == sorted([f"alice/{deleting.file_id}", f"alice/{stale.file_id}"])
    assert report.orphan_vectors == [f"alice/{orphan.file_id}"] and report.orphan_keywords == report.orphan_vectors
    assert sorted(report.orphan_folders) == sorted([f"alice/{orphan.file_id}", "alice/file-stray"])
    assert (report.users_swept, report.incoming_files) == (["ghost"], 1)
    assert [r.file_id for r in await harness.repository.list_for("alice")] == [kept.file_id]
    assert await harness.vectors.file_ids("alice") == await harness.keywords.file_ids("alice") == {kept.file_id}
    assert sorted(p.name for p in harness.layout.user_files_dir("alice").iterdir() if p.is_dir()) == [kept.file_id]
    assert not harness.layout.user_files_dir("ghost").exists() and "ghost" not in harness.vectors.rows
    assert gone_user.file_id not in str(harness.tree())
    assert not old_upload.exists() and young_upload.exists()
    assert "Document repair at start-up" in caplog.text
    second = await harness.build().repair(account_exists)
    assert second.purged_documents == second.orphan_vectors == second.orphan_folders == []


async def test_deleting_a_user_removes_their_vectors_and_keyword_entries(harness: Harness) -> None:
    await harness.upload("alice", "a.txt", b"alice text")
    await harness.upload("bob", "b.txt", b"bob text")
    assert await harness.service.delete_all_of("alice") == 1
    assert "alice" not in harness.vectors.rows and "alice" not in harness.keywords.rows
    assert await harness.vectors.file_ids("bob") != set()
