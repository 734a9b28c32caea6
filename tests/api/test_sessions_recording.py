"""Chat completions are recorded per user and session; the id comes back in a header and the body."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.api.account_helpers import (
    admin_token,
    assert_error,
    bearer,
    chat,
    model_of,
    new_user_token,
)
from tests.conftest import RunningServer, ServerThread, credential_for, make_settings


def _session(server: RunningServer, token: str, session_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/api/sessions/{session_id}", headers=bearer(token), timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_completion_naming_a_new_session_is_recorded_and_the_id_comes_back_in_header_and_body(
    server: RunningServer,
) -> None:
    username, token = new_user_token(server, admin_token(server))
    response = chat(server, token, "What is the capital of France?", headers={"X-Session-Id": "capitals-1"})
    assert response.status_code == 200
    session_id = response.headers["X-Session-Id"]
    assert session_id == "capitals-1" and response.json()["session_id"] == session_id
    reply = response.json()["choices"][0]["message"]["content"]

    session = _session(server, token, session_id)
    assert session["title"] == "What is the capital of France?"
    user_turn, assistant_turn = session["messages"]
    assert (user_turn["role"], user_turn["content"]) == ("user", "What is the capital of France?")
    assert (assistant_turn["role"], assistant_turn["content"]) == ("assistant", reply)
    assert assistant_turn["mode"] == "chat" and assistant_turn["tools_used"] == [] and assistant_turn["reason"]
    assert user_turn["timestamp"] <= assistant_turn["timestamp"]

    on_disk = json.loads((server.settings.data_dir / "conversations" / f"{session_id}.json").read_text())
    assert on_disk["user_id"] == username
    assert on_disk["session_id"] == session_id and on_disk["created_at"] and on_disk["updated_at"]


def test_a_completion_naming_no_session_is_answered_and_not_stored(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    plain = chat(server, token, "One-off question", record=False)
    streamed = chat(server, token, "Another one-off", record=False, stream=True)
    assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"]
    assert "X-Session-Id" not in plain.headers and "session_id" not in plain.json()
    assert streamed.status_code == 200 and "data: [DONE]" in streamed.text
    assert "X-Session-Id" not in streamed.headers and '"session_id"' not in streamed.text
    listed = httpx.get(f"{server.base_url}/api/sessions", headers=bearer(token), timeout=30).json()
    assert listed["total"] == 0


def test_with_record_all_requests_every_call_is_kept_in_a_new_unguessable_session(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = make_settings(tmp_path_factory.mktemp("audit"), record_all_requests=True)
    with ServerThread(settings) as base_url:
        audited = RunningServer(base_url, settings, credential_for(base_url, settings))
        first = chat(audited, audited.api_key, "Audited one", record=False)
        second = chat(audited, audited.api_key, "Audited two", record=False)
        ids = [first.headers["X-Session-Id"], second.headers["X-Session-Id"]]
        assert ids[0] != ids[1] and all(len(session_id) >= 32 for session_id in ids)
        assert first.json()["session_id"] == ids[0]
        token = admin_token(audited)
        listed = httpx.get(f"{base_url}/api/sessions", headers=bearer(token), timeout=30).json()
        assert {item["session_id"] for item in listed["data"]} == set(ids)


def test_follow_ups_in_the_same_session_append_only_the_new_turns(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    first = chat(server, token, "Hello there", mode="chat")
    session_id = first.headers["X-Session-Id"]
    answer = first.json()["choices"][0]["message"]["content"]
    model = model_of(server, token)
    second = httpx.post(f"{server.v1}/chat/completions", headers=bearer(token), timeout=60, json={
        "model": model, "max_tokens": 3, "session_id": session_id, "mode": "chat",
        "messages": [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": answer},
                     {"role": "user", "content": "Tell me more"}],
    })
    assert second.status_code == 200 and second.headers["X-Session-Id"] == session_id
    messages = _session(server, token, session_id)["messages"]
    assert [(m["role"], m["content"]) for m in messages[:4]] == [
        ("user", "Hello there"), ("assistant", answer), ("user", "Tell me more"),
        ("assistant", second.json()["choices"][0]["message"]["content"]),
    ]
    assert len(messages) == 4 and messages[-1]["mode"] == "chat"


def test_the_session_can_be_named_with_the_x_session_id_header(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    response = chat(server, token, "First", headers={"X-Session-Id": "my-own-session-1"})
    assert response.headers["X-Session-Id"] == "my-own-session-1"
    body_wins = chat(server, token, "Second", session_id="my-own-session-2",
                     headers={"X-Session-Id": "my-own-session-1"})
    assert body_wins.json()["session_id"] == "my-own-session-2"
    assert len(_session(server, token, "my-own-session-1")["messages"]) == 2


def test_an_invalid_session_id_is_a_400_naming_it(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    response = chat(server, token, "Hi", session_id="../../users/users")
    assert assert_error(response, 400, "invalid_session_id")["param"] == "session_id"


def test_a_stream_is_recorded_when_it_ends_and_every_chunk_carries_the_session(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    body = {"model": model_of(server, token), "messages": [{"role": "user", "content": "Count to three."}],
            "max_tokens": 8, "stream": True, "stream_options": {"include_usage": True}, "session_id": "counting-1"}
    text = ""
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, headers=bearer(token), timeout=60) as r:
        session_id = r.headers["X-Session-Id"]
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[len("data: "):])
                assert chunk["session_id"] == session_id
                if chunk["choices"]:
                    text += chunk["choices"][0]["delta"].get("content") or ""
    messages = _wait_for_reply(server, token, session_id)
    assert [(m["role"], m["content"]) for m in messages] == [("user", "Count to three."), ("assistant", text)]
    assert "incomplete" not in messages[-1]


def test_a_stream_abandoned_by_the_client_records_what_was_generated(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    body = {
        "model": model_of(server, token), "stream": True, "max_tokens": 1500, "temperature": 1.0,
        "messages": [{"role": "user", "content": "Write a very long essay about rivers."}], "session_id": "rivers-1",
        "logit_bias": {"0": -100, "1": -100, "2": -100},  # no end-of-turn: only the disconnect ends it
    }
    received = ""
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, headers=bearer(token), timeout=60) as r:
        session_id = r.headers["X-Session-Id"]
        events = 0
        for line in r.iter_lines():
            if line.startswith("data: "):
                events += 1
                received += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            if events >= 6:
                break
    messages = _wait_for_reply(server, token, session_id)
    reply = messages[-1]
    assert reply["incomplete"] is True and reply["finish_reason"] is None
    assert reply["content"].startswith(received) and len(reply["content"]) < 5000


def test_a_stream_still_running_when_its_user_is_deleted_leaves_no_conversation(server: RunningServer) -> None:
    admin = admin_token(server)
    name, token = new_user_token(server, admin)
    body = {
        "model": model_of(server, token), "stream": True, "max_tokens": 1500, "temperature": 1.0,
        "messages": [{"role": "user", "content": "Write a very long essay about mountains."}],
        "session_id": "mountains-1",
        "logit_bias": {"0": -100, "1": -100, "2": -100},  # no end-of-turn: the stream runs until we leave
    }
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, headers=bearer(token), timeout=60) as r:
        session_id = r.headers["X-Session-Id"]
        lines = r.iter_lines()
        while not next(lines).startswith("data: "):
            pass  # the answer is being generated
        deleted = httpx.delete(f"{server.base_url}/api/admin/users/{name}", headers=bearer(admin), timeout=30)
        assert deleted.status_code == 200 and deleted.json()["removed"]["conversations"] == 0
        for _ in range(3):
            next(lines)  # still streaming after the deletion
    _wait_until_no_stream_is_active(server)
    assert not (server.settings.data_dir / "conversations" / f"{session_id}.json").exists()


def _wait_until_no_stream_is_active(server: RunningServer) -> None:
    """A stream records its conversation before it stops counting as active."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{server.base_url}/metrics", timeout=30).text
        if "\nllm_active_streams 0.0\n" in metrics:
            return
        time.sleep(0.1)
    raise AssertionError("a stream stayed active")


def _wait_for_reply(server: RunningServer, token: str, session_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = httpx.get(f"{server.base_url}/api/sessions/{session_id}", headers=bearer(token), timeout=30)
        if response.status_code == 200 and response.json()["messages"][-1]["role"] == "assistant":
            return list(response.json()["messages"])
        time.sleep(0.1)
    raise AssertionError("the reply was never recorded")
