"""Conversation files: owner checks inside the lock, listing per owner, and corrupt files skipped."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from backend.conversations.models import Conversation, SessionNotFound
from backend.storage.conversation_repository import ConversationRepository
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout


@pytest.fixture
def repository(tmp_path: Path) -> ConversationRepository:
    return ConversationRepository(JsonStore(tmp_path), DataLayout(tmp_path))


def _say(text: str):  # type: ignore[no-untyped-def]
    def add(conversation: Conversation) -> None:
        conversation["messages"].append({"role": "user", "content": text})

    return add


async def test_a_new_session_belongs_to_its_creator(repository: ConversationRepository, tmp_path: Path) -> None:
    created = await repository.change("s1", "alice", _say("hi"), create=True)
    assert created["user_id"] == "alice" and created["session_id"] == "s1"
    assert (tmp_path / "conversations" / "s1.json").is_file()
    assert await repository.owner_of("s1") == "alice"
    assert (await repository.get("s1", "alice"))["messages"] == [{"role": "user", "content": "hi"}]


async def test_another_users_session_is_not_found_for_every_operation(repository: ConversationRepository) -> None:
    await repository.change("s1", "alice", _say("secret"), create=True)
    with pytest.raises(SessionNotFound):
        await repository.get("s1", "bob")
    with pytest.raises(SessionNotFound):
        await repository.change("s1", "bob", _say("intrusion"), create=True)
    with pytest.raises(SessionNotFound):
        await repository.delete("s1", "bob")
    assert (await repository.get("s1", "alice"))["messages"] == [{"role": "user", "content": "secret"}]


async def test_changing_a_missing_session_without_create_is_not_found(repository: ConversationRepository) -> None:
    with pytest.raises(SessionNotFound):
        await repository.change("nope", "alice", _say("x"), create=False)
    assert await repository.owner_of("nope") is None


@pytest.mark.parametrize("bad_id", ["../users/users", "a/b", ".hidden", "x.json", "", "a" * 129, "s1.corrupt-1"])
async def test_unsafe_session_ids_never_reach_the_disk(repository: ConversationRepository, bad_id: str) -> None:
    with pytest.raises(SessionNotFound):
        await repository.change(bad_id, "alice", _say("x"), create=True)


async def test_listing_shows_only_the_owners_sessions_newest_first(repository: ConversationRepository) -> None:
    for session_id in ("a1", "a2", "a3"):
        await repository.change(session_id, "alice", _say(session_id), create=True)
    await repository.change("b1", "bob", _say("b1"), create=True)
    await repository.change("a1", "alice", _say("again"), create=True)
    listed = await repository.summaries_for("alice")
    assert [summary.session_id for summary in listed] == ["a1", "a3", "a2"]
    assert listed[0].message_count == 2
    assert [summary.session_id for summary in await repository.summaries_for("bob")] == ["b1"]


async def test_listing_sees_changes_to_files_it_has_cached(repository: ConversationRepository, tmp_path: Path) -> None:
    await repository.change("a1", "alice", _say("one"), create=True)
    path = tmp_path / "conversations" / "a1.json"
    old = time.time() - 60
    os.utime(path, (old, old))  # old enough for its summary to be cached
    assert (await repository.summaries_for("alice"))[0].message_count == 1
    await repository.change("a1", "alice", _say("two"), create=True)
    assert (await repository.summaries_for("alice"))[0].message_count == 2
    await repository.delete("a1", "alice")
    assert await repository.summaries_for("alice") == []


async def test_a_corrupt_conversation_is_skipped_in_listings_and_quarantined(
    repository: ConversationRepository, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await repository.change("good", "alice", _say("fine"), create=True)
    broken = tmp_path / "conversations" / "broken.json"
    broken.write_text('{"session_id": "broken", "user_id": "alice", "messages": [')
    with caplog.at_level(logging.ERROR):
        listed = await repository.summaries_for("alice")
    assert [summary.session_id for summary in listed] == ["good"]
    assert not broken.exists()
    assert len(list(broken.parent.glob("broken.json.corrupt-*"))) == 1
    assert any(record.levelno == logging.ERROR for record in caplog.records)


async def test_delete_all_of_removes_only_that_owners_sessions(repository: ConversationRepository) -> None:
    for session_id in ("a1", "a2"):
        await repository.change(session_id, "alice", _say("x"), create=True)
    await repository.change("b1", "bob", _say("x"), create=True)
    assert await repository.delete_all_of("alice") == 2
    assert await repository.summaries_for("alice") == []
    assert len(await repository.summaries_for("bob")) == 1
