"""What gets recorded per chat request: new inputs only, the reply with mode and tools, titles."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from backend.auth.models import User, UserRecord
from backend.conversations.conversation_service import (
    AssistantTurn,
    ConversationService,
    SessionPage,
    new_inputs,
    new_session_id,
    title_from,
)
from backend.conversations.models import SessionNotFound
from backend.llm.port import ChatMessage, StreamDelta, ToolCall
from backend.service_errors import InvalidInput
from backend.storage.conversation_repository import ConversationRepository
from backend.storage.json_store import JsonStore
from backend.storage.layout import DataLayout
from backend.storage.user_repository import UserRepository

ALICE = User("alice", uid="acct_alice")
BOB = User("bob", uid="acct_bob")


def _account(user: User) -> UserRecord:
    return UserRecord(
        username=user.username, password_hash="$2b$12$notarealhash", role="user",
        created_at="2026-01-01T00:00:00.000000+00:00", updated_at="2026-01-01T00:00:00.000000+00:00",
        uid=str(user.uid),
    )


@pytest.fixture
async def users(tmp_path: Path) -> UserRepository:
    repository = UserRepository(JsonStore(tmp_path), DataLayout(tmp_path))
    for user in (ALICE, BOB):
        await repository.create(_account(user))
    return repository


@pytest.fixture
def service(tmp_path: Path, users: UserRepository) -> ConversationService:
    return ConversationService(ConversationRepository(JsonStore(tmp_path), DataLayout(tmp_path)), users)


def _reply(text: str, **fields: object) -> AssistantTurn:
    return AssistantTurn(content=text, model="m", mode="chat", **fields)  # type: ignore[arg-type]


def test_new_inputs_are_the_rest_when_the_record_is_a_prefix() -> None:
    recorded = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    request = [ChatMessage("user", "hi"), ChatMessage("assistant", "hello"), ChatMessage("user", "how are you")]
    assert new_inputs(recorded, request) == [ChatMessage("user", "how are you")]


def test_new_inputs_after_an_edit_are_what_follows_the_last_assistant_turn() -> None:
    recorded = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    request = [ChatMessage("system", "today is Monday"), ChatMessage("user", "hi"),
               ChatMessage("assistant", "hello"), ChatMessage("user", "and now?")]
    assert new_inputs(recorded, request) == [ChatMessage("user", "and now?")]
    assert new_inputs([], request) == request


def test_titles_come_from_the_text_trimmed_to_80_characters() -> None:
    assert title_from("  What is\n the   capital of France?  ") == "What is the capital of France?"
    long_title = title_from("word " * 40)
    assert len(long_title) <= 81 and long_title.endswith("…")
    assert title_from("   ") == "New conversation"


def test_new_session_ids_are_unguessable_and_distinct() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(session_id) >= 32 for session_id in ids)


async def test_a_request_naming_no_session_is_not_recorded(service: ConversationService, tmp_path: Path) -> None:
    session = await service.open_session(ALICE, None)
    assert session is None
    await service.record_exchange(session, [ChatMessage("user", "a one-off call")], _reply("ok"))
    recorder = service.stream_recorder(session, [ChatMessage("user", "a streamed one")], "m", "chat")
    await recorder.finish()
    assert (await service.list_sessions(ALICE, 10, 0)).total == 0
    assert not list(tmp_path.glob("conversations/*.json"))


async def test_with_record_all_requests_an_unnamed_request_gets_a_new_unguessable_session(
    users: UserRepository, tmp_path: Path
) -> None:
    service = ConversationService(
        ConversationRepository(JsonStore(tmp_path), DataLayout(tmp_path)), users, record_all_requests=True
    )
    first, second = await service.open_session(ALICE, None), await service.open_session(ALICE, None)
    assert first is not None and second is not None
    assert first.session_id != second.session_id and len(first.session_id) >= 32
    await service.record_exchange(first, [ChatMessage("user", "audited")], _reply("ok"))
    assert [item.session_id for item in (await service.list_sessions(ALICE, 10, 0)).items] == [first.session_id]


async def test_an_exchange_records_inputs_reply_mode_tools_and_title(service: ConversationService) -> None:
    session = await service.open_session(ALICE, "sums")
    assert session is not None
    messages = [ChatMessage("system", "be brief"), ChatMessage("user", "What is 2+2?")]
    await service.record_exchange(session, messages, _reply("4", tools_used=["math_calc"]))
    stored = await service.get_session(ALICE, session.session_id)
    assert stored["title"] == "What is 2+2?"
    assert [(m["role"], m["content"]) for m in stored["messages"]] == [
        ("system", "be brief"), ("user", "What is 2+2?"), ("assistant", "4"),
    ]
    reply = stored["messages"][-1]
    assert reply["mode"] == "chat" and reply["tools_used"] == ["math_calc"]
    assert all(message["timestamp"] for message in stored["messages"])

    follow_up = [*messages, ChatMessage("assistant", "4"), ChatMessage("user", "And 3+3?")]
    await service.record_exchange(session, follow_up, _reply("6"))
    stored = await service.get_session(ALICE, session.session_id)
    assert [m["content"] for m in stored["messages"]] == ["be brief", "What is 2+2?", "4", "And 3+3?", "6"]


async def test_stream_recorder_saves_what_was_generated_when_the_stream_stops_early(
    service: ConversationService,
) -> None:
    session = await service.open_session(ALICE, "stream-1")
    recorder = service.stream_recorder(session, [ChatMessage("user", "count")], "m", "auto")
    recorder.add(StreamDelta(content="one, "))
    recorder.add(StreamDelta(content="two"))
    await recorder.finish()
    await recorder.finish()  # only once
    stored = await service.get_session(ALICE, "stream-1")
    assert [m["content"] for m in stored["messages"]] == ["count", "one, two"]
    assert stored["messages"][-1]["incomplete"] is True


async def test_stream_recorder_keeps_tool_calls_and_finish_reason(service: ConversationService) -> None:
    session = await service.open_session(ALICE, "stream-2")
    recorder = service.stream_recorder(session, [ChatMessage("user", "weather?")], "m", "auto")
    recorder.add(StreamDelta(tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),)))
    recorder.add(StreamDelta(finish_reason="tool_calls"))
    await recorder.finish()
    reply = (await service.get_session(ALICE, "stream-2"))["messages"][-1]
    assert reply["tool_calls"] == [{"id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'}]
    assert reply["finish_reason"] == "tool_calls" and "incomplete" not in reply


async def test_someone_elses_session_id_is_refused_and_left_untouched(
    service: ConversationService, tmp_path: Path
) -> None:
    session = await service.open_session(ALICE, "alices")
    await service.record_exchange(session, [ChatMessage("user", "private")], _reply("ok"))
    before = (tmp_path / "conversations" / "alices.json").read_bytes()
    with pytest.raises(SessionNotFound):
        await service.open_session(BOB, "alices")
    assert (tmp_path / "conversations" / "alices.json").read_bytes() == before


async def test_a_session_claimed_by_someone_else_meanwhile_is_not_written(
    service: ConversationService, tmp_path: Path
) -> None:
    bobs = await service.open_session(BOB, "raced")  # free when Bob's request arrived
    alices = await service.open_session(ALICE, "raced")
    await service.record_exchange(alices, [ChatMessage("user", "mine")], _reply("ok"))
    before = (tmp_path / "conversations" / "raced.json").read_bytes()
    with pytest.raises(SessionNotFound):
        await service.record_exchange(bobs, [ChatMessage("user", "intrusion")], _reply("no"))
    assert (tmp_path / "conversations" / "raced.json").read_bytes() == before
    assert json.loads(before)["user_id"] == "alice"


async def test_an_invalid_session_id_is_a_400_naming_the_field(service: ConversationService) -> None:
    with pytest.raises(InvalidInput) as caught:
        await service.open_session(ALICE, "../../etc/passwd")
    assert caught.value.param == "session_id"


async def test_recording_into_a_corrupt_conversation_keeps_the_old_file_aside_and_goes_on(
    service: ConversationService, tmp_path: Path
) -> None:
    session = await service.open_session(ALICE, "damaged")
    await service.record_exchange(session, [ChatMessage("user", "first")], _reply("one"))
    path = tmp_path / "conversations" / "damaged.json"
    path.write_text(path.read_text()[:-20])
    await service.record_exchange(session, [ChatMessage("user", "second")], _reply("two"))
    assert [m["content"] for m in (await service.get_session(ALICE, "damaged"))["messages"]] == ["second", "two"]
    assert len(list(path.parent.glob("damaged.json.corrupt-*"))) == 1


async def test_rename_marks_the_title_as_edited_and_it_stays(service: ConversationService) -> None:
    session = await service.open_session(ALICE, "titled")
    await service.record_exchange(session, [ChatMessage("user", "first question")], _reply("a"))
    renamed = await service.rename_session(ALICE, "titled", "  My   title ")
    assert renamed["title"] == "My title"
    await service.record_exchange(session, [ChatMessage("user", "more")], _reply("b"))
    assert (await service.get_session(ALICE, "titled"))["title"] == "My title"
    with pytest.raises(SessionNotFound):
        await service.rename_session(BOB, "titled", "stolen")


async def test_opening_a_corrupt_session_moves_it_aside_and_starts_afresh(
    service: ConversationService, tmp_path: Path
) -> None:
    folder = tmp_path / "conversations"
    folder.mkdir()
    (folder / "broken.json").write_text('{"user_id": "alice", "messages": [')
    session = await service.open_session(ALICE, "broken")
    await service.record_exchange(session, [ChatMessage("user", "again")], _reply("ok"))
    assert [m["content"] for m in (await service.get_session(ALICE, "broken"))["messages"]] == ["again", "ok"]
    assert len(list(folder.glob("broken.json.corrupt-*"))) == 1


async def test_a_stream_that_outlives_its_deleted_account_records_nothing(
    service: ConversationService, users: UserRepository, tmp_path: Path
) -> None:
    session = await service.open_session(ALICE, "outlived")
    recorder = service.stream_recorder(session, [ChatMessage("user", "a long answer please")], "m", "auto")
    recorder.add(StreamDelta(content="Once upon"))
    await users.delete("alice")  # the admin deletes Alice while her answer is still streaming
    recorder.add(StreamDelta(content=" a time", finish_reason="stop"))
    await recorder.finish()
    assert not (tmp_path / "conversations").exists()  # not even created and removed again
    assert await service.list_sessions(ALICE, 10, 0) == SessionPage([], 0, 10, 0)


async def test_a_request_of_a_deleted_account_recreated_under_its_name_is_not_recorded(
    service: ConversationService, users: UserRepository, tmp_path: Path
) -> None:
    session = await service.open_session(ALICE, "old-alice")
    await users.delete("alice")
    await users.create(replace(_account(ALICE), uid="acct_new_alice"))
    await service.record_exchange(session, [ChatMessage("user", "hi")], _reply("hello"))
    assert not (tmp_path / "conversations").exists()


class _DeletedRightAfterTheCheck:
    """The account directory, with the account deleted just after recording checked it (the race)."""

    def __init__(self, users: UserRepository) -> None:
        self.users = users
        self.checks = 0

    async def account_exists(self, user: User) -> bool:
        self.checks += 1
        exists = await self.users.account_exists(user)
        if self.checks == 1:
            await self.users.delete(user.username)
        return exists


async def test_an_account_deleted_while_its_exchange_is_written_leaves_no_file(
    users: UserRepository, tmp_path: Path
) -> None:
    accounts = _DeletedRightAfterTheCheck(users)
    service = ConversationService(ConversationRepository(JsonStore(tmp_path), DataLayout(tmp_path)), accounts)
    session = await service.open_session(ALICE, "raced-deletion")
    await service.record_exchange(session, [ChatMessage("user", "hi")], _reply("hello"))
    assert accounts.checks == 2
    assert not (tmp_path / "conversations" / "raced-deletion.json").exists()
