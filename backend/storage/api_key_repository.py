"""API keys in `DATA_DIR/users/api_keys.json`: one record per key, holding only the key's hash."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

from backend.auth.models import ApiKeyRecord
from backend.service_errors import Conflict, NotFound
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout

FORMAT_VERSION = 1


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


class TooManyApiKeys(Conflict):
    code = "too_many_api_keys"


def _empty() -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "keys": {}}


def _records(document: dict[str, Any]) -> dict[str, ApiKeyRecord]:
    return {key_id: ApiKeyRecord(**fields) for key_id, fields in document.get("keys", {}).items()}


def _document(records: dict[str, ApiKeyRecord]) -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "keys": {key_id: asdict(record) for key_id, record in records.items()}}


class ApiKeyRepository:
    def __init__(self, store: JsonStore, layout: DataLayout) -> None:
        self._store = store
        self._path = layout.api_keys_file

    async def _all(self) -> dict[str, ApiKeyRecord]:
        return _records(await self._store.read(self._path, _empty))

    async def _change(self, change: Callable[[dict[str, ApiKeyRecord]], None]) -> None:
        def apply(document: dict[str, Any]) -> dict[str, Any]:
            records = _records(document)
            change(records)
            return _document(records)

        await self._store.update(self._path, apply, _empty)

    async def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        # A linear scan over a few hundred records costs microseconds; the hash of a
        # high-entropy key reveals nothing, so a non-constant-time match leaks nothing.
        for record in (await self._all()).values():
            if record.key_hash == key_hash:
                return record
        return None

    async def list_for(self, username: str) -> list[ApiKeyRecord]:
        owned = [record for record in (await self._all()).values() if record.username == username]
        return sorted(owned, key=lambda record: record.created_at)

    async def add(self, record: ApiKeyRecord, max_per_user: int) -> ApiKeyRecord:
        def insert(records: dict[str, ApiKeyRecord]) -> None:
            owned = sum(1 for existing in records.values() if existing.username == record.username)
            if owned >= max_per_user:
                raise TooManyApiKeys(f"At most {max_per_user} API keys per user; revoke one first.")
            records[record.id] = record

        await self._change(insert)
        return record

    async def revoke(self, username: str, key_id: str) -> ApiKeyRecord:
        """Delete one of `username`'s keys; someone else's key id answers exactly like a missing one."""
        removed: list[ApiKeyRecord] = []

        def drop(records: dict[str, ApiKeyRecord]) -> None:
            record = records.get(key_id)
            if record is None or record.username != username:
                raise ApiKeyNotFound(f"No API key with id '{key_id}'.", param="id")
            removed.append(records.pop(key_id))

        await self._change(drop)
        return removed[0]

    async def revoke_all_of(self, username: str) -> int:
        removed = [0]

        def drop(records: dict[str, ApiKeyRecord]) -> None:
            for key_id in [key_id for key_id, record in records.items() if record.username == username]:
                del records[key_id]
                removed[0] += 1

        await self._change(drop)
        return removed[0]

    async def touch(self, key_id: str, when: str) -> None:
        """Record a use; a key revoked meanwhile stays revoked."""

        def mark(records: dict[str, ApiKeyRecord]) -> None:
            if key_id in records:
                records[key_id] = replace(records[key_id], last_used_at=when)

        await self._change(mark)
