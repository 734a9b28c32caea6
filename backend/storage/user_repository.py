"""Accounts in `DATA_DIR/users/users.json`, read and changed through the JSON store.

Every check that must hold across workers (unique names, at least one enabled admin) runs
inside the store's locked read-modify-write, so two processes cannot both pass it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from backend.auth.models import UserRecord
from backend.service_errors import Conflict, NotFound
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout

FORMAT_VERSION = 1


class UserExists(Conflict):
    code = "user_exists"


class UserNotFound(NotFound):
    code = "user_not_found"


class LastAdmin(Conflict):
    """Refused: the change would leave no enabled admin, and nobody could manage the server."""

    code = "last_admin"


def _empty() -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "users": {}}


def _records(document: dict[str, Any]) -> dict[str, UserRecord]:
    return {name: UserRecord(**fields) for name, fields in document.get("users", {}).items()}


def _document(records: dict[str, UserRecord]) -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "users": {name: asdict(record) for name, record in records.items()}}


def _enabled_admins(records: dict[str, UserRecord]) -> int:
    return sum(1 for record in records.values() if record.role == "admin" and not record.disabled)


class UserRepository:
    def __init__(self, store: JsonStore, layout: DataLayout) -> None:
        self._store = store
        self._path = layout.users_file

    async def _all(self) -> dict[str, UserRecord]:
        return _records(await self._store.read(self._path, _empty))

    async def get(self, username: str) -> UserRecord | None:
        return (await self._all()).get(username)

    async def list_all(self) -> list[UserRecord]:
        return sorted((await self._all()).values(), key=lambda record: record.created_at)

    async def _change(self, change: Callable[[dict[str, UserRecord]], None]) -> dict[str, UserRecord]:
        result: dict[str, UserRecord] = {}

        def apply(document: dict[str, Any]) -> dict[str, Any]:
            records = _records(document)
            had_admin = _enabled_admins(records) > 0
            change(records)
            if had_admin and _enabled_admins(records) == 0:
                raise LastAdmin("This would leave the server without an enabled admin.")
            result.update(records)
            return _document(records)

        await self._store.update(self._path, apply, _empty)
        return result

    async def create(self, record: UserRecord) -> UserRecord:
        def add(records: dict[str, UserRecord]) -> None:
            # Names differing only in case would name different folders yet look alike to people.
            if any(name.lower() == record.username.lower() for name in records):
                raise UserExists(f"The username '{record.username}' is taken.", param="username")
            records[record.username] = record

        await self._change(add)
        return record

    async def create_first(self, make_record: Callable[[], UserRecord]) -> UserRecord | None:
        """Create the record from `make_record()` only if there are no users at all (admin bootstrap).

        `make_record` runs under the lock, so of several workers starting at once exactly one creates it.
        """
        created: list[UserRecord] = []

        def add_if_empty(records: dict[str, UserRecord]) -> None:
            if not records:
                record = make_record()
                records[record.username] = record
                created.append(record)

        await self._change(add_if_empty)
        return created[0] if created else None

    async def update(self, username: str, change: Callable[[UserRecord], UserRecord]) -> UserRecord:
        def replace(records: dict[str, UserRecord]) -> None:
            current = records.get(username)
            if current is None:
                raise UserNotFound(f"No user named '{username}'.", param="username")
            records[username] = change(current)

        return (await self._change(replace))[username]

    async def delete(self, username: str) -> UserRecord:
        removed: list[UserRecord] = []

        def drop(records: dict[str, UserRecord]) -> None:
            record = records.pop(username, None)
            if record is None:
                raise UserNotFound(f"No user named '{username}'.", param="username")
            removed.append(record)

        await self._change(drop)
        return removed[0]
