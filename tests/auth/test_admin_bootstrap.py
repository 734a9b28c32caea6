"""First start: an admin from ADMIN_USERNAME/ADMIN_PASSWORD, or with a generated password shown once and
deleted from disk once the admin has changed it."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest

from backend.auth.admin_bootstrap import AdminBootstrapError, bootstrap_admin
from backend.auth.passwords import hash_password_sync, verify_password
from backend.auth.user_service import UserService
from backend.storage.api_key_repository import ApiKeyRepository
from backend.storage.conversation_repository import ConversationRepository
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout
from backend.storage.user_repository import UserRepository


def _users(root: Path) -> tuple[UserRepository, DataLayout]:
    layout = DataLayout(root)
    return UserRepository(JsonStore(root), layout), layout


async def test_without_admin_password_one_is_generated_printed_once_and_saved_0600(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users, layout = _users(tmp_path)
    created = await bootstrap_admin(users, "admin", None, layout.initial_admin_password_file)
    assert created is not None and created.role == "admin"
    password_file = layout.initial_admin_password_file
    password = password_file.read_text().strip()
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert len(password) >= 20
    assert password in capsys.readouterr().err
    assert await verify_password(password, created.password_hash)

    again = await bootstrap_admin(users, "admin", None, password_file)
    assert again is None
    assert password not in capsys.readouterr().err
    assert [record.username for record in await users.list_all()] == ["admin"]


async def test_configured_admin_password_is_used_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users, layout = _users(tmp_path)
    created = await bootstrap_admin(users, "root-admin", "a-configured-password", layout.initial_admin_password_file)
    assert created is not None and created.username == "root-admin"
    assert await verify_password("a-configured-password", created.password_hash)
    assert not layout.initial_admin_password_file.exists()
    assert "a-configured-password" not in capsys.readouterr().err


async def test_users_file_stores_a_bcrypt_hash_never_the_password(tmp_path: Path) -> None:
    users, layout = _users(tmp_path)
    await bootstrap_admin(users, "admin", "a-configured-password", layout.initial_admin_password_file)
    text = layout.users_file.read_text()
    assert "a-configured-password" not in text and "$2b$12$" in text
    assert stat.S_IMODE(layout.users_file.stat().st_mode) == 0o600


async def test_too_long_admin_password_stops_start_up_naming_the_setting(tmp_path: Path) -> None:
    users, layout = _users(tmp_path)
    with pytest.raises(AdminBootstrapError, match="ADMIN_PASSWORD"):
        await bootstrap_admin(users, "admin", "p" * 80, layout.initial_admin_password_file)
    assert await users.list_all() == []


def _service(root: Path, users: UserRepository, layout: DataLayout) -> UserService:
    store = JsonStore(root)
    return UserService(users, ApiKeyRepository(store, layout), ConversationRepository(store, layout), layout)


async def test_the_generated_password_file_goes_once_the_admin_changes_that_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users, layout = _users(tmp_path)
    admin = await bootstrap_admin(users, "admin", None, layout.initial_admin_password_file)
    assert admin is not None and layout.initial_admin_password_file.exists()
    service = _service(tmp_path, users, layout)
    await service.create_user("alice", "alice-password-1", "user")

    await service.update_user("alice", password="alice-password-2", acting=admin.principal())
    assert layout.initial_admin_password_file.exists()  # another account's change leaves it
    await service.update_user("admin", password="the-admins-own-choice", acting=admin.principal())
    assert not layout.initial_admin_password_file.exists()


async def test_a_file_that_no_longer_holds_the_admins_password_is_deleted_at_the_next_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users, layout = _users(tmp_path)
    await bootstrap_admin(users, "admin", None, layout.initial_admin_password_file)
    assert await bootstrap_admin(users, "admin", None, layout.initial_admin_password_file) is None
    assert layout.initial_admin_password_file.exists()  # still the admin's password: kept

    # Changed while the file was out of reach (say, by an older version of the server).
    await users.update("admin", lambda record: replace(record, password_hash=hash_password_sync("changed-pw-1")))
    assert await bootstrap_admin(users, "admin", None, layout.initial_admin_password_file) is None
    assert not layout.initial_admin_password_file.exists()
