"""One JSON file of records by id (`{"version": N, "<collection>": {id: fields}}`) on the JSON store.

The users file and the API keys file are both this shape; this module is their shared read,
locked read-modify-write and format upgrade, so each repository keeps only its own rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Generic, TypeVar

from backend.storage.json_store import JsonStore

R = TypeVar("R")
T = TypeVar("T")


class RecordFile(Generic[R]):
    """Records of one dataclass kept in one file, each stored as its fields (`asdict`).

    A file of an older `version` is upgraded on first read: parsed and written back under the
    file's lock, so field defaults filled in for old records (a generated id, say) are decided
    exactly once, even with several workers reading it at the same moment.
    """

    def __init__(self, store: JsonStore, path: Path, collection: str, version: int, record_type: type[R]) -> None:
        self._store = store
        self._path = path
        self._collection = collection
        self._version = version
        self._record_type = record_type

    def _empty(self) -> dict[str, Any]:
        return {"version": self._version, self._collection: {}}

    def _records(self, document: dict[str, Any]) -> dict[str, R]:
        stored: dict[str, dict[str, Any]] = document.get(self._collection, {})
        return {record_id: self._record_type(**fields) for record_id, fields in stored.items()}

    def _document(self, records: dict[str, R]) -> dict[str, Any]:
        stored = {record_id: asdict(record) for record_id, record in records.items()}  # type: ignore[call-overload]
        return {"version": self._version, self._collection: stored}

    async def read_all(self) -> dict[str, R]:
        document = await self._store.read(self._path, self._empty)
        if document.get("version", 0) < self._version:
            # Never use defaults filled in outside the lock: another worker may be deciding it too.
            return await self.change(lambda records: dict(records))
        return self._records(document)

    async def change(self, change: Callable[[dict[str, R]], T]) -> T:
        """Apply `change` to all records under the file's lock and save them; returns what `change` returns.

        `change` mutates the dict in place; if it raises, nothing is written.
        """
        result: list[T] = []

        def apply(document: dict[str, Any]) -> dict[str, Any]:
            records = self._records(document)
            result.append(change(records))
            return self._document(records)

        await self._store.update(self._path, apply, self._empty)
        return result[0]
