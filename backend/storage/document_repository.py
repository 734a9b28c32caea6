"""Metadata of each user's documents in `DATA_DIR/files/{username}/documents.json`, one record per document.

This file is the source of truth: a document exists for its user when its record does. Uploads write
the record last (after the file, vectors and keyword entries), deletes mark it `deleting` first and
drop it last, so whatever a crash leaves behind can be recognised and swept at the next start.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from backend.rag.document_errors import DocumentNotFound, TooManyDocuments
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout
from backend.storage.record_file import RecordFile

FORMAT_VERSION = 1
DocumentStatus = Literal["processing", "ready", "deleting"]


@dataclass(frozen=True)
class DocumentRecord:
    file_id: str
    filename: str
    kind: str
    size: int
    sha256: str
    pages: int | None
    chunks: int
    uploaded_at: str
    status: DocumentStatus
    tables: list[str] = field(default_factory=list)
    """SQLite uploads: the tables sql_query can read from it."""

    @property
    def live(self) -> bool:
        return self.status != "deleting"

    def public(self) -> dict[str, object]:
        shown: dict[str, object] = {
            "file_id": self.file_id, "filename": self.filename, "kind": self.kind, "size": self.size,
            "sha256": self.sha256, "pages": self.pages, "chunks": self.chunks, "uploaded_at": self.uploaded_at,
            "status": self.status,
        }
        if self.kind == "sqlite":
            shown["tables"] = list(self.tables)
        return shown


def not_found(file_id: str) -> DocumentNotFound:
    return DocumentNotFound(f"No document with id '{file_id}'.", param="file_id")


@dataclass(frozen=True)
class Reservation:
    record: DocumentRecord
    created: bool
    """False: a live document with the same SHA-256 already existed and is returned instead."""


class DocumentRepository:
    def __init__(self, store: JsonStore, layout: DataLayout) -> None:
        self._store = store
        self._layout = layout

    def _file(self, username: str) -> RecordFile[DocumentRecord]:
        return RecordFile(
            self._store, self._layout.user_documents_file(username), "documents", FORMAT_VERSION, DocumentRecord
        )

    def exists_for(self, username: str) -> bool:
        return self._layout.user_documents_file(username).is_file()

    async def list_for(self, username: str) -> list[DocumentRecord]:
        """Every record of the user, oldest first (including ones being processed or deleted)."""
        if not self.exists_for(username):
            return []
        records = await self._file(username).read_all()
        return sorted(records.values(), key=lambda record: (record.uploaded_at, record.file_id))

    async def get(self, username: str, file_id: str) -> DocumentRecord | None:
        if not self.exists_for(username):
            return None
        return (await self._file(username).read_all()).get(file_id)

    async def find_live_by_sha256(self, username: str, sha256: str) -> DocumentRecord | None:
        return next((r for r in await self.list_for(username) if r.live and r.sha256 == sha256), None)

    async def count_live(self, username: str) -> int:
        return sum(1 for record in await self.list_for(username) if record.live)

    async def reserve(self, record: DocumentRecord, username: str, max_documents: int) -> Reservation:
        """Insert `record` unless a live document has the same content (returned instead) or the cap is reached."""

        def insert(records: dict[str, DocumentRecord]) -> Reservation:
            live = [existing for existing in records.values() if existing.live]
            for existing in live:
                if existing.sha256 == record.sha256:
                    return Reservation(existing, created=False)
            if len(live) >= max_documents:
                raise TooManyDocuments(
                    f"You have {len(live)} documents, the limit per user (MAX_DOCUMENTS_PER_USER); delete one first."
                )
            records[record.file_id] = record
            return Reservation(record, created=True)

        return await self._file(username).change(insert)

    async def mark(self, username: str, file_id: str, status: DocumentStatus) -> DocumentRecord:
        if not self.exists_for(username):
            raise not_found(file_id)

        def change(records: dict[str, DocumentRecord]) -> DocumentRecord:
            current = records.get(file_id)
            if current is None:
                raise not_found(file_id)
            records[file_id] = replace(current, status=status)
            return records[file_id]

        return await self._file(username).change(change)

    async def mark_deleting(self, username: str, file_id: str) -> DocumentRecord:
        """The first step of a delete; a record already being deleted is taken over (a retried delete)."""
        return await self.mark(username, file_id, "deleting")

    async def remove(self, username: str, file_id: str) -> bool:
        if not self.exists_for(username):
            return False

        def drop(records: dict[str, DocumentRecord]) -> bool:
            return records.pop(file_id, None) is not None

        return await self._file(username).change(drop)
