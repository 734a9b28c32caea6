"""Conversations, one JSON file each: `DATA_DIR/conversations/{session_id}.json`.

A conversation belongs to the user who created it; every change checks the owner inside the
file's lock, and someone else's session answers exactly like a missing one (`SessionNotFound`),
so ids cannot be probed. Listing scans the folder; summaries are cached per file and revalidated
with `stat`, so listing does not re-parse every conversation on every call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.conversations.models import Conversation, SessionNotFound, SessionSummary
from backend.service_errors import CorruptJSONFile
from backend.storage.json_store import CORRUPT_MARKER, JsonStore
from backend.storage.layout import DataLayout
from backend.storage.timestamps import utc_now_iso

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
"""Stricter than file names in general: no dots, so an id can never look like a quarantined or temp file."""
CACHE_SAFE_AGE_S = 2.0
"""File timestamps tick coarsely (a few ms); a summary is only cached once its file is older than this,
so a later write always changes the signature it is checked against."""

def is_valid_session_id(session_id: str) -> bool:
    return bool(SESSION_ID_PATTERN.fullmatch(session_id))


def _not_found(session_id: str) -> SessionNotFound:
    return SessionNotFound(f"No session with id '{session_id}'.", param="session_id")


def _summary(conversation: Conversation) -> SessionSummary:
    return SessionSummary(
        session_id=str(conversation.get("session_id", "")),
        user_id=str(conversation.get("user_id", "")),
        title=str(conversation.get("title", "")),
        created_at=str(conversation.get("created_at", "")),
        updated_at=str(conversation.get("updated_at", "")),
        message_count=len(conversation.get("messages", [])),
    )


class ConversationRepository:
    def __init__(self, store: JsonStore, layout: DataLayout) -> None:
        self._store = store
        self._layout = layout
        self._summaries: dict[str, tuple[tuple[int, int, int], SessionSummary]] = {}
        self._summaries_guard = threading.Lock()

    def _path(self, session_id: str) -> Path:
        if not is_valid_session_id(session_id):
            raise _not_found(session_id)
        return self._layout.conversation_file(session_id)

    async def get(self, session_id: str, owner: str) -> Conversation:
        conversation = await self._store.read(self._path(session_id))
        if not isinstance(conversation, dict) or conversation.get("user_id") != owner:
            raise _not_found(session_id)
        return conversation

    async def owner_of(self, session_id: str) -> str | None:
        conversation = await self._store.read(self._path(session_id))
        return conversation.get("user_id") if isinstance(conversation, dict) else None

    async def change(
        self, session_id: str, owner: str, change: Callable[[Conversation], None], *, create: bool
    ) -> Conversation:
        """Apply `change` to the conversation under its lock; with `create`, a missing one is started.

        `change` mutates the conversation in place; `updated_at` is set afterwards.
        """
        path = self._path(session_id)

        def apply(current: Conversation | None) -> Conversation:
            if current is None:
                if not create:
                    raise _not_found(session_id)
                now = utc_now_iso()
                current = {
                    "version": FORMAT_VERSION, "session_id": session_id, "user_id": owner, "title": "",
                    "title_edited": False, "created_at": now, "updated_at": now, "messages": [],
                }
            elif current.get("user_id") != owner:
                raise _not_found(session_id)
            change(current)
            current["updated_at"] = utc_now_iso()
            return current

        result: Conversation = await self._store.update(path, apply, lambda: None)
        return result

    async def delete(self, session_id: str, owner: str) -> None:
        def owned_by_caller(current: Any) -> None:
            if not isinstance(current, dict) or current.get("user_id") != owner:
                raise _not_found(session_id)

        await self._store.delete(self._path(session_id), owned_by_caller)

    async def summaries_for(self, owner: str) -> list[SessionSummary]:
        """Every conversation of `owner`, newest (last updated) first."""
        summaries = await asyncio.to_thread(self._scan)
        owned = [summary for summary in summaries if summary.user_id == owner]
        owned.sort(key=lambda summary: summary.updated_at, reverse=True)
        return owned

    async def delete_all_of(self, owner: str) -> int:
        removed = 0
        for summary in await self.summaries_for(owner):
            try:
                await self.delete(summary.session_id, owner)
                removed += 1
            except SessionNotFound:  # deleted meanwhile
                continue
        return removed

    def _scan(self) -> list[SessionSummary]:
        folder = self._layout.conversations_dir
        if not folder.is_dir():
            return []
        summaries: list[SessionSummary] = []
        seen: set[str] = set()
        now = time.time()
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if not name.endswith(".json") or name.startswith(".") or CORRUPT_MARKER in name:
                    continue
                if not is_valid_session_id(name[: -len(".json")]):
                    continue
                seen.add(entry.path)
                summary = self._summary_of(Path(entry.path), now)
                if summary is not None:
                    summaries.append(summary)
        with self._summaries_guard:
            for stale in set(self._summaries) - seen:
                del self._summaries[stale]
        return summaries

    def _summary_of(self, path: Path, now: float) -> SessionSummary | None:
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        signature = (info.st_ino, info.st_mtime_ns, info.st_size)
        key = str(path)
        with self._summaries_guard:
            cached = self._summaries.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        try:
            conversation = self._store.load(path)
        except CorruptJSONFile:
            return None  # quarantined and logged by the store; the listing goes on without it
        if not isinstance(conversation, dict):
            return None
        summary = _summary(conversation)
        if now - info.st_mtime >= CACHE_SAFE_AGE_S:
            with self._summaries_guard:
                self._summaries[key] = (signature, summary)
        return summary
