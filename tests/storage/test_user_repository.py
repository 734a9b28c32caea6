"""Accounts on disk: unique names, the enabled-admin guard, first-admin creation only once, account uids."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest

from backend.auth.account_errors import LastAdmin, UserExists, UserNotFound
from backend.auth.models import UserRecord
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout
from backend.storage.user_repository import UserRepository


def _record(username: str, role: str = "user") -> UserRecord:
    return UserRecord(
        username=username, password_hash="$2b$12$notarealhash", role=role,  # type: ignore[arg-type]
        created_at="2026-01-01T00:00:00.000000+00:00", updated_at="2026-01-01T00:00:00.000000+00:00",
        uid=f"acct_{username}",
    )


@pytest.fixture
def users(tmp_path: Path) -> UserRepository:
    return UserRepository(JsonStore(tmp_path), DataLayout(tmp_path))


async def test_created_users_are_read_back(users: UserRepository) -> None:
    await users.create(_record("alice"))
    assert await users.get("alice") == _record("alice")
    assert await users.get("bob") is None


async def test_names_differing_only_in_case_are_refused(users: UserRepository) -> None:
    await users.create(_record("alice"))
    with pytest.raises(UserExists):
        await users.create(_record("Alice"))
    assert [record.username for record in await users.list_all()] == ["alice"]


async def test_the_last_enabled_admin_cannot_be_demoted_disabled_or_deleted(users: UserRepository) -> None:
    await users.create(_record("root", "admin"))
    await users.create(_record("alice"))
    with pytest.raises(LastAdmin):
        await users.update("root", lambda record: replace(record, role="user"))
    with pytest.raises(LastAdmin):
        await users.update("root", lambda record: replace(record, disabled=True))
    with pytest.raises(LastAdmin):
        await users.delete("root")
    assert (await users.get("root")) == _record("root", "admin")
    await users.update("alice", lambda record: replace(record, role="admin"))
    await users.delete("root")
    assert await users.get("root") is None


async def test_first_user_is_created_only_when_there_are_none(users: UserRepository) -> None:
    assert await users.create_first(lambda: _record("root", "admin")) is not None
    calls: list[str] = []

    def second() -> UserRecord:
        calls.append("called")
        return _record("other", "admin")

    assert await users.create_first(second) is None
    assert calls == []


async def test_changing_or_deleting_a_missing_user_is_not_found(users: UserRepository) -> None:
    with pytest.raises(UserNotFound):
        await users.update("ghost", lambda record: record)
    with pytest.raises(UserNotFound):
        await users.delete("ghost")


async def test_a_recreated_account_is_another_account_than_the_deleted_one(users: UserRepository) -> None:
    first = await users.create(replace(_record("alice"), uid="acct_first"))
    assert await users.account_exists(first.principal())
    await users.delete("alice")
    assert not await users.account_exists(first.principal())
    second = await users.create(replace(_record("alice"), uid="acct_second"))
    assert await users.account_exists(second.principal())
    assert not await users.account_exists(first.principal())


def _version_1_file(path: Path, names: list[str]) -> None:
    """A users file as written before accounts had a uid."""
    records = {}
    for name in names:
        fields = {key: value for key, value in _record(name).__dict__.items() if key != "uid"}
        records[name] = fields
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 1, "users": records}))


async def test_a_users_file_without_uids_loads_and_each_account_gets_one_lasting_uid(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    _version_1_file(layout.users_file, ["alice", "bob"])
    # Several workers (each its own store) reading the old file at the same moment must agree.
    readers = [UserRepository(JsonStore(tmp_path), layout) for _ in range(4)]
    seen = await asyncio.gather(*(reader.get(name) for reader in readers for name in ("alice", "bob") * 5))
    assert all(record is not None for record in seen)
    uids = {name: {record.uid for record in seen if record and record.username == name} for name in ("alice", "bob")}
    assert all(len(found) == 1 for found in uids.values()), uids
    assert uids["alice"] != uids["bob"]

    on_disk = json.loads(layout.users_file.read_text())
    assert on_disk["version"] == 2
    assert {name: {fields["uid"]} for name, fields in on_disk["users"].items()} == uids
    alice = await UserRepository(JsonStore(tmp_path), layout).get("alice")
    assert alice == replace(_record("alice"), uid=next(iter(uids["alice"])))  # every other field kept
