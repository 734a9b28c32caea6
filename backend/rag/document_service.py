"""Documents of each user: upload (type check, parse, chunk, embed, index), listing, deletion, repair.

Order of writes, so that a crash at any point is recognisable: an upload parses, chunks and embeds
first (a refused file therefore leaves nothing anywhere), then reserves its metadata record as
`processing`, moves the file into the user's folder, adds vectors and keyword entries, and marks the
record `ready`. A delete marks the record `deleting`, removes vectors, keyword entries and the file,
and drops the record last. `repair` (at start-up) finishes both kinds of interrupted work and sweeps
whatever exists in the stores or folders without a record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from backend.per_user_limits import PerUserLimit
from backend.rag.chunking import chunk_document
from backend.rag.document_errors import EmptyFile, NoText, TooManyDocuments
from backend.rag.file_types import HEAD_BYTES, detect_kind, sanitise_filename
from backend.rag.parsing import DocumentParser
from backend.rag.ports import Embedder, KeywordIndex, VectorStore
from backend.storage.document_repository import DocumentRecord, DocumentRepository, not_found
from backend.storage.layout import DataLayout
from backend.storage.private_paths import make_private_dirs
from backend.storage.timestamps import utc_now_iso
from backend.storage.user_folders import UserFolders

logger = logging.getLogger(__name__)

STALE_AFTER_S = 3600.0
"""A `processing` record or an incoming upload older than this belongs to no live worker and is swept."""


@dataclass(frozen=True)
class IncomingFile:
    """An upload received in full into a temp file (outside every user's folder), with its size and hash."""

    path: Path
    filename: str
    size: int
    sha256: str


@dataclass(frozen=True)
class IngestResult:
    document: DocumentRecord
    created: bool


@dataclass(frozen=True)
class DocumentPage:
    documents: list[DocumentRecord]
    total: int
    page: int
    page_size: int


@dataclass
class RepairReport:
    purged_documents: list[str] = field(default_factory=list)
    orphan_vectors: list[str] = field(default_factory=list)
    orphan_keywords: list[str] = field(default_factory=list)
    orphan_folders: list[str] = field(default_factory=list)
    users_swept: list[str] = field(default_factory=list)
    incoming_files: int = 0


@dataclass(frozen=True)
class DocumentSettings:
    chunk_size: int
    chunk_overlap: int
    max_documents_per_user: int


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex}"


class DocumentService:
    def __init__(
        self,
        *,
        repository: DocumentRepository,
        parser: DocumentParser,
        embedder: Embedder,
        vector_store: VectorStore,
        keyword_index: KeywordIndex,
        layout: DataLayout,
        settings: DocumentSettings,
        ingestions: PerUserLimit,
    ) -> None:
        self._repository = repository
        self._parser = parser
        self._embedder = embedder
        self._vectors = vector_store
        self._keywords = keyword_index
        self._layout = layout
        self._settings = settings
        self._ingestions = ingestions

    @property
    def incoming_dir(self) -> Path:
        return self._layout.incoming_uploads_dir

    def ingestion_slot(self, username: str) -> AbstractContextManager[None]:
        """One of the user's concurrent ingestions, taken before the body is read (429 when all are busy)."""
        return self._ingestions.hold(username)

    # --- upload

    async def ingest(self, username: str, incoming: IncomingFile) -> IngestResult:
        """Store, parse and index one upload; the same content again answers with the existing document."""
        filename = sanitise_filename(incoming.filename)
        if incoming.size == 0:
            raise EmptyFile("The uploaded file is empty (0 bytes).", param="file")
        kind = detect_kind(await asyncio.to_thread(_head, incoming.path), filename)
        existing = await self._repository.find_live_by_sha256(username, incoming.sha256)
        if existing is not None:
            return IngestResult(existing, created=False)
        if await self._repository.count_live(username) >= self._settings.max_documents_per_user:
            raise TooManyDocuments(
                f"You have {self._settings.max_documents_per_user} documents, the limit per user "
                "(MAX_DOCUMENTS_PER_USER); delete one first."
            )
        parsed = await self._parser.parse(incoming.path, kind)
        file_id = new_file_id()
        chunks = [] if kind == "sqlite" else chunk_document(
            parsed, file_id, filename, self._settings.chunk_size, self._settings.chunk_overlap
        )
        if kind != "sqlite" and not chunks:
            raise NoText("The document has no text to index.", param="file")
        vectors = await self._embedder.embed([chunk.text for chunk in chunks]) if chunks else None
        record = DocumentRecord(
            file_id=file_id, filename=filename, kind=kind, size=incoming.size, sha256=incoming.sha256,
            pages=parsed.page_count, chunks=len(chunks), uploaded_at=utc_now_iso(), status="processing",
            tables=parsed.tables,
        )
        reservation = await self._repository.reserve(record, username, self._settings.max_documents_per_user)
        if not reservation.created:  # the same content finished uploading meanwhile
            return IngestResult(reservation.record, created=False)
        try:
            await asyncio.to_thread(self._store_file, incoming.path, username, file_id, filename)
            if vectors is not None:
                await self._vectors.add(username, chunks, vectors)
                await self._keywords.add(username, chunks)
            ready = await self._repository.mark(username, file_id, "ready")
        except BaseException:
            logger.exception("Ingestion of %s for '%s' failed; rolling back", file_id, username)
            await self._roll_back(username, file_id)
            raise
        logger.info("Ingested %s (%s, %d chunks) for '%s' as %s", filename, kind, len(chunks), username, file_id)
        return IngestResult(ready, created=True)

    def _store_file(self, source: Path, username: str, file_id: str, filename: str) -> None:
        folder = self._layout.document_dir(username, file_id)
        make_private_dirs(folder.parent)
        folder.mkdir(mode=0o700, exist_ok=False)
        folder.chmod(0o700)  # whatever the umask
        with source.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(source, folder / filename)
        _fsync_folder(folder)
        _fsync_folder(folder.parent)

    async def _roll_back(self, username: str, file_id: str) -> None:
        try:
            await self._repository.mark_deleting(username, file_id)
            await self._purge(username, file_id)
        except Exception:
            logger.exception("Rollback of %s for '%s' is incomplete; the next start finishes it", file_id, username)

    # --- reading

    async def list_documents(self, username: str, page: int, page_size: int) -> DocumentPage:
        shown = [record for record in await self._repository.list_for(username) if record.live]
        start = (page - 1) * page_size
        return DocumentPage(shown[start:start + page_size], total=len(shown), page=page, page_size=page_size)

    async def filenames(self, username: str) -> list[str]:
        """Names of the user's live documents (the router's `UserDocuments`: "what does budget.csv say")."""
        return [record.filename for record in await self._repository.list_for(username) if record.live]

    async def get_document(self, username: str, file_id: str) -> DocumentRecord:
        """The user's document; another user's id answers exactly as a missing one."""
        record = await self._repository.get(username, file_id)
        if record is None or not record.live:
            raise not_found(file_id)
        return record

    # --- deletion

    async def delete_document(self, username: str, file_id: str) -> None:
        await self.get_document(username, file_id)
        await self._repository.mark_deleting(username, file_id)
        await self._purge(username, file_id)
        logger.info("Deleted document %s of '%s'", file_id, username)

    async def _purge(self, username: str, file_id: str) -> None:
        """Vectors, keyword entries, file, then the record; a failure leaves the record `deleting` for repair."""
        await self._vectors.delete_file(username, file_id)
        await self._keywords.delete_file(username, file_id)
        await asyncio.to_thread(_remove_tree, self._layout.document_dir(username, file_id))
        await self._repository.remove(username, file_id)

    async def delete_all_of(self, username: str) -> int:
        """The vectors and keyword index of a user being deleted, wherever they live; returns their document count.

        The user's folders (files with their metadata, vectors, cache) are removed by the caller afterwards.
        """
        count = sum(1 for record in await self._repository.list_for(username) if record.live)
        await self._vectors.delete_user(username)
        await self._keywords.delete_user(username)
        return count

    # --- start-up repair

    async def repair(self, account_exists: Callable[[str], Awaitable[bool]]) -> RepairReport:
        """Finish interrupted uploads and deletes, and sweep data that no record accounts for (all logged)."""
        report = RepairReport()
        await asyncio.to_thread(make_private_dirs, self.incoming_dir)  # uploads are received there
        report.incoming_files = await asyncio.to_thread(_sweep_incoming, self.incoming_dir)
        for username in sorted(await asyncio.to_thread(self._usernames_on_disk)):
            if not await account_exists(username):
                await self.delete_all_of(username)
                await asyncio.to_thread(UserFolders(self._layout).delete_all, username)
                report.users_swept.append(username)
                logger.warning("Swept the documents of '%s', whose account no longer exists", username)
                continue
            await self._repair_user(username, report)
        found = [name for name, value in vars(report).items() if value]
        if found:
            logger.warning("Document repair at start-up: %s", {name: vars(report)[name] for name in found})
        return report

    def _usernames_on_disk(self) -> set[str]:
        names: set[str] = set()
        for root in (self._layout.root / "files", self._layout.root / "vectors"):
            if root.is_dir():
                names.update(entry.name for entry in root.iterdir() if entry.is_dir())
        return names

    async def _repair_user(self, username: str, report: RepairReport) -> None:
        now = time.time()
        for record in await self._repository.list_for(username):
            stale = record.status == "processing" and now - _epoch(record.uploaded_at) > STALE_AFTER_S
            if record.status == "deleting" or stale:
                await self._repository.mark_deleting(username, record.file_id)
                await self._purge(username, record.file_id)
                report.purged_documents.append(f"{username}/{record.file_id}")
        known = {record.file_id for record in await self._repository.list_for(username)}
        for file_id in sorted(await self._vectors.file_ids(username) - known):
            await self._vectors.delete_file(username, file_id)
            report.orphan_vectors.append(f"{username}/{file_id}")
        for file_id in sorted(await self._keywords.file_ids(username) - known):
            await self._keywords.delete_file(username, file_id)
            report.orphan_keywords.append(f"{username}/{file_id}")
        for folder in await asyncio.to_thread(self._document_folders, username):
            if folder.name not in known:
                await asyncio.to_thread(_remove_tree, folder)
                report.orphan_folders.append(f"{username}/{folder.name}")

    def _document_folders(self, username: str) -> list[Path]:
        root = self._layout.user_files_dir(username)
        return sorted(entry for entry in root.iterdir() if entry.is_dir()) if root.is_dir() else []


def _head(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(HEAD_BYTES)


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


def _remove_tree(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sweep_incoming(folder: Path) -> int:
    """Uploads a dead worker was receiving; young ones may belong to a live worker and stay."""
    if not folder.is_dir():
        return 0
    removed = 0
    cutoff = time.time() - STALE_AFTER_S
    for entry in folder.iterdir():
        try:
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                entry.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed
