"""Accounts on disk: unique names, the enabled-admin guard, and first-admin creation only once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from backend.auth.models import UserRecord
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout
from backend.storage.user_repository import LastAdmin, UserExists, UserNotFound, UserRepository


def _record(username: str, role: str = "user") -> UserRecord:
    return UserRecord(
        username=username, password_hash="$2b$12$notarealhash", role=role,  # type: ignore[arg-type]
        created_at="2026-01-01T00:00:00.000000+00:00", updated_at="2026-01-01T00:00:00.000000+00:00",
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
