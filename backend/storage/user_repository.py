"""Accounts in `DATA_DIR/users/users.json`, read and changed through the JSON store.

Every check that must hold across workers (unique names, at least one enabled admin) runs
inside the store's locked read-modify-write, so two processes cannot both pass it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from backend.auth.account_errors import LastAdmin, UserExists, UserNotFound
from backend.auth.models import User, UserRecord
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout
from backend.storage.record_file import RecordFile

FORMAT_VERSION = 2
"""2: every record has a `uid`. Version 1 files are upgraded on first read, each account getting one."""

T = TypeVar("T")


def _enabled_admins(records: dict[str, UserRecord]) -> int:
    return sum(1 for record in records.values() if record.role == "admin" and not record.disabled)


class UserRepository:
    def __init__(self, store: JsonStore, layout: DataLayout) -> None:
        self._file: RecordFile[UserRecord] = RecordFile(
            store, layout.users_file, "users", FORMAT_VERSION, UserRecord
        )

    async def get(self, username: str) -> UserRecord | None:
        return (await self._file.read_all()).get(username)

    async def list_all(self) -> list[UserRecord]:
        return sorted((await self._file.read_all()).values(), key=lambda record: record.created_at)

    async def account_exists(self, user: User) -> bool:
        """Whether `user`'s own account still exists: not deleted, nor replaced by a new one of the same name."""
        record = await self.get(user.username)
        return record is not None and record.uid == user.uid

    async def _change(self, change: Callable[[dict[str, UserRecord]], T]) -> T:
        def guarded(records: dict[str, UserRecord]) -> T:
            had_admin = _enabled_admins(records) > 0
            result = change(records)
            if had_admin and _enabled_admins(records) == 0:
                raise LastAdmin("This would leave the server without an enabled admin.")
            return result

        return await self._file.change(guarded)

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

        def add_if_empty(records: dict[str, UserRecord]) -> UserRecord | None:
            if records:
                return None
            record = make_record()
            records[record.username] = record
            return record

        return await self._change(add_if_empty)

    async def update(self, username: str, change: Callable[[UserRecord], UserRecord]) -> UserRecord:
        def replace(records: dict[str, UserRecord]) -> UserRecord:
            current = records.get(username)
            if current is None:
                raise UserNotFound(f"No user named '{username}'.", param="username")
            records[username] = change(current)
            return records[username]

        return await self._change(replace)

    async def delete(self, username: str) -> UserRecord:
        def drop(records: dict[str, UserRecord]) -> UserRecord:
            record = records.pop(username, None)
            if record is None:
                raise UserNotFound(f"No user named '{username}'.", param="username")
            return record

        return await self._change(drop)
