"""API keys in `DATA_DIR/users/api_keys.json`: one record per key, holding only the key's hash."""

from __future__ import annotations

from dataclasses import replace

from backend.auth.account_errors import ApiKeyNotFound, TooManyApiKeys
from backend.auth.models import ApiKeyRecord
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout
from backend.storage.record_file import RecordFile

FORMAT_VERSION = 1
"""`user_uid` was added without a version bump: a key stored without it reads as None, as intended."""


class ApiKeyRepository:
    def __init__(self, store: JsonStore, layout: DataLayout) -> None:
        self._file: RecordFile[ApiKeyRecord] = RecordFile(
            store, layout.api_keys_file, "keys", FORMAT_VERSION, ApiKeyRecord
        )

    async def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        # A linear scan over a few hundred records costs microseconds; the hash of a
        # high-entropy key reveals nothing, so a non-constant-time match leaks nothing.
        for record in (await self._file.read_all()).values():
            if record.key_hash == key_hash:
                return record
        return None

    async def list_for(self, username: str) -> list[ApiKeyRecord]:
        owned = [record for record in (await self._file.read_all()).values() if record.username == username]
        return sorted(owned, key=lambda record: record.created_at)

    async def add(self, record: ApiKeyRecord, max_per_user: int) -> ApiKeyRecord:
        def insert(records: dict[str, ApiKeyRecord]) -> None:
            owned = sum(1 for existing in records.values() if existing.username == record.username)
            if owned >= max_per_user:
                raise TooManyApiKeys(f"At most {max_per_user} API keys per user; revoke one first.")
            records[record.id] = record

        await self._file.change(insert)
        return record

    async def revoke(self, username: str, key_id: str) -> ApiKeyRecord:
        """Delete one of `username`'s keys; someone else's key id answers exactly like a missing one."""

        def drop(records: dict[str, ApiKeyRecord]) -> ApiKeyRecord:
            record = records.get(key_id)
            if record is None or record.username != username:
                raise ApiKeyNotFound(f"No API key with id '{key_id}'.", param="id")
            return records.pop(key_id)

        return await self._file.change(drop)

    async def revoke_all_of(self, username: str) -> int:
        def drop(records: dict[str, ApiKeyRecord]) -> int:
            owned = [key_id for key_id, record in records.items() if record.username == username]
            for key_id in owned:
                del records[key_id]
            return len(owned)

        return await self._file.change(drop)

    async def touch(self, key_id: str, when: str) -> None:
        """Record a use; a key revoked meanwhile stays revoked."""

        def mark(records: dict[str, ApiKeyRecord]) -> None:
            if key_id in records:
                records[key_id] = replace(records[key_id], last_used_at=when)

        await self._file.change(mark)
