"""Account management: create, change and delete users (admin routes and self sign-up).

Deleting a user removes everything of theirs: the account first (so their credentials stop
working at once), then their API keys, conversations, documents (with their vectors and keyword
entries, which may live outside DATA_DIR in a Chroma server) and per-user folders.

A new password always voids the account's older sign-in tokens (its token version goes up). When it
is a reset, set by an admin for another account, the account's API keys are revoked too: a reset is
what one does when the account may be in the wrong hands, and keys made by those hands must go with
it. Changing your own password keeps your keys (you proved the old one and manage your keys yourself).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Protocol

from backend.auth.admin_bootstrap import forget_initial_password
from backend.auth.models import USERNAME_PATTERN, Role, User, UserRecord
from backend.auth.passwords import check_policy, hash_password
from backend.service_errors import Conflict, InvalidInput
from backend.storage.api_key_repository import ApiKeyRepository
from backend.storage.conversation_repository import ConversationRepository
from backend.storage.layout import DataLayout
from backend.storage.timestamps import utc_now_iso
from backend.storage.user_folders import UserFolders
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
        self._folders = UserFolders(layout)
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
        """Change role, password and/or disabled flag; a new password or disabling voids the user's tokens.

        A password set for another account (an admin's reset) also revokes that account's API keys.
        """
        if username == acting.username and (role == "user" or disabled):
            raise OwnAccountProtected("You cannot demote or disable your own account.")
        new_hash = None
        if password is not None:
            check_policy(password)
            new_hash = await hash_password(password)
        replaced_hashes: list[str] = []

        def change(current: UserRecord) -> UserRecord:
            updated = current
            if role is not None:
                updated = replace(updated, role=role)
            if new_hash is not None:
                replaced_hashes.append(current.password_hash)
                updated = replace(updated, password_hash=new_hash, token_version=updated.token_version + 1)
            if disabled is not None and disabled != updated.disabled:
                updated = replace(updated, disabled=disabled)
                if disabled:
                    updated = replace(updated, token_version=updated.token_version + 1)
            return replace(updated, updated_at=utc_now_iso()) if updated != current else current

        record = await self._users.update(username, change)
        if replaced_hashes:
            await forget_initial_password(self._layout.initial_admin_password_file, replaced_hashes[0])
            if username != acting.username:
                revoked = await self._api_keys.revoke_all_of(username)
                logger.warning(
                    "Password of '%s' reset by '%s'; revoked %d API keys", username, acting.username, revoked
                )
        return record

    async def delete_user(self, username: str, *, acting: User) -> DeletedUser:
        if username == acting.username:
            raise OwnAccountProtected("You cannot delete your own account.")
        await self._users.delete(username)
        keys = await self._api_keys.revoke_all_of(username)
        conversations = await self._conversations.delete_all_of(username)
        documents = await self._documents.delete_all_of(username) if self._documents else 0
        folders = [str(folder) for folder in await asyncio.to_thread(self._folders.delete_all, username)]
        logger.warning(
            "Deleted user '%s' with %d API keys, %d conversations, %d documents and %d folders",
            username, keys, conversations, documents, len(folders),
        )
        return DeletedUser(username, keys, conversations, folders, documents)
