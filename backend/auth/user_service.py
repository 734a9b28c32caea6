"""Account management: create, change and delete users (admin routes and self sign-up).

Deleting a user removes everything of theirs: the account first (so their credentials stop
working at once), then their API keys, conversations, documents (with their vectors and keyword
entries, which may live outside DATA_DIR in a Chroma server) and per-user folders.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from backend.auth.models import USERNAME_PATTERN, Role, User, UserRecord
from backend.auth.passwords import check_policy, hash_password
from backend.service_errors import Conflict, InvalidInput
from backend.storage.api_key_repository import ApiKeyRepository
from backend.storage.conversation_repository import ConversationRepository
from backend.storage.layout import DataLayout
from backend.storage.timestamps import utc_now_iso
from backend.storage.user_repository import UserRepository

logger = logging.getLogger(__name__)


class OwnAccountProtected(Conflict):
    """An admin cannot delete, disable or demote themselves: that is how servers get locked out."""

    code = "own_account"


class UserDocuments(Protocol):
    """What the document service offers account deletion (kept as a port: accounts do not import RAG)."""

    async def delete_all_of(self, username: str) -> int: ...


@dataclass(frozen=True)
class DeletedUser:
    username: str
    api_keys: int
    conversations: int
    folders: list[str]
    documents: int = 0


def check_username(username: str) -> str:
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidInput(
            "Usernames have 3-64 letters, digits, '_', '.' or '-', starting with a letter or digit.",
            param="username", code="invalid_username",
        )
    return username


class UserService:
    def __init__(
        self,
        users: UserRepository,
        api_keys: ApiKeyRepository,
        conversations: ConversationRepository,
        layout: DataLayout,
        documents: UserDocuments | None = None,
    ) -> None:
        self._users = users
        self._api_keys = api_keys
        self._conversations = conversations
        self._layout = layout
        self._documents = documents

    async def list_users(self) -> list[UserRecord]:
        return await self._users.list_all()

    async def create_user(self, username: str, password: str, role: Role) -> UserRecord:
        check_username(username)
        check_policy(password)
        now = utc_now_iso()
        record = UserRecord(
            username=username, password_hash=await hash_password(password), role=role,
            created_at=now, updated_at=now,
        )
        created = await self._users.create(record)
        logger.info("Created %s account '%s'", role, username)
        return created

    async def update_user(
        self,
        username: str,
        *,
        acting: User,
        role: Role | None = None,
        password: str | None = None,
        disabled: bool | None = None,
    ) -> UserRecord:
        """Change role, password and/or disabled flag; a new password or disabling voids the user's tokens."""
        if username == acting.username and (role == "user" or disabled):
            raise OwnAccountProtected("You cannot demote or disable your own account.")
        new_hash = None
        if password is not None:
            check_policy(password)
            new_hash = await hash_password(password)

        def change(current: UserRecord) -> UserRecord:
            updated = current
            if role is not None:
                updated = replace(updated, role=role)
            if new_hash is not None:
                updated = replace(updated, password_hash=new_hash, token_version=updated.token_version + 1)
            if disabled is not None and disabled != updated.disabled:
                updated = replace(updated, disabled=disabled)
                if disabled:
                    updated = replace(updated, token_version=updated.token_version + 1)
            return replace(updated, updated_at=utc_now_iso()) if updated != current else current

        return await self._users.update(username, change)

    async def delete_user(self, username: str, *, acting: User) -> DeletedUser:
        if username == acting.username:
            raise OwnAccountProtected("You cannot delete your own account.")
        await self._users.delete(username)
        keys = await self._api_keys.revoke_all_of(username)
        conversations = await self._conversations.delete_all_of(username)
        documents = await self._documents.delete_all_of(username) if self._documents else 0
        folders = [str(folder) for folder in self._layout.user_dirs(username) if await _remove_tree(folder)]
        logger.warning(
            "Deleted user '%s' with %d API keys, %d conversations, %d documents and %d folders",
            username, keys, conversations, documents, len(folders),
        )
        return DeletedUser(username, keys, conversations, folders, documents)


async def _remove_tree(folder: Path) -> bool:
    def remove() -> bool:
        if not folder.exists():
            return False
        shutil.rmtree(folder)
        return True

    return await asyncio.to_thread(remove)
