"""/api/sessions: own sessions only, newest first, paginated; someone else's id is a 404 like a missing one."""

from __future__ import annotations

import httpx
import pytest

from tests.api.account_helpers import admin_token, assert_error, bearer, chat, new_user_token
from tests.conftest import RunningServer


@pytest.fixture(scope="module")
def alice_and_bob(server: RunningServer) -> tuple[str, str]:
    admin = admin_token(server)
    return new_user_token(server, admin)[1], new_user_token(server, admin)[1]


def _sessions(server: RunningServer, token: str, **params: int) -> httpx.Response:
    return httpx.get(f"{server.base_url}/api/sessions", params=params, headers=bearer(token), timeout=30)


def test_listing_is_newest_first_and_paginated_with_total(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    ids = [chat(server, token, f"Question number {n}").headers["X-Session-Id"] for n in range(3)]
    chat(server, token, "Back to the first", session_id=ids[0])  # the first is now the newest

    everything = _sessions(server, token).json()
    assert everything["total"] == 3 and everything["object"] == "list"
    assert [item["session_id"] for item in everything["data"]] == [ids[0], ids[2], ids[1]]
    assert everything["data"][0]["message_count"] == 4
    assert everything["data"][1]["title"] == "Question number 2"

    page = _sessions(server, token, limit=2, offset=1).json()
    assert [item["session_id"] for item in page["data"]] == [ids[2], ids[1]]
    assert (page["total"], page["limit"], page["offset"], page["has_more"]) == (3, 2, 1, False)
    assert _sessions(server, token, limit=1).json()["has_more"] is True
    assert assert_error(_sessions(server, token, limit=0), 400)["param"] == "limit"


def test_a_session_can_be_renamed_and_deleted(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    session_id = chat(server, token, "Original question").headers["X-Session-Id"]
    url = f"{server.base_url}/api/sessions/{session_id}"
    renamed = httpx.patch(url, json={"title": "Renamed"}, headers=bearer(token))
    assert renamed.status_code == 200 and renamed.json()["title"] == "Renamed"
    assert _sessions(server, token).json()["data"][0]["title"] == "Renamed"
    assert assert_error(httpx.patch(url, json={"title": ""}, headers=bearer(token)), 400)["param"] == "title"

    deleted = httpx.delete(url, headers=bearer(token))
    assert deleted.json() == {"session_id": session_id, "deleted": True}
    assert_error(httpx.get(url, headers=bearer(token)), 404, "session_not_found")
    assert _sessions(server, token).json()["total"] == 0
    assert not (server.settings.data_dir / "conversations" / f"{session_id}.json").exists()


def test_another_users_session_cannot_be_read_listed_renamed_or_deleted(
    server: RunningServer, alice_and_bob: tuple[str, str]
) -> None:
    alice, bob = alice_and_bob
    session_id = chat(server, alice, "Alice's private question").headers["X-Session-Id"]
    path = server.settings.data_dir / "conversations" / f"{session_id}.json"
    before = path.read_bytes()
    url = f"{server.base_url}/api/sessions/{session_id}"
    missing_url = f"{server.base_url}/api/sessions/sess_doesnotexist"

    for method, body in (("GET", None), ("PATCH", {"title": "mine now"}), ("DELETE", None)):
        theirs = httpx.request(method, url, json=body, headers=bearer(bob))
        missing = httpx.request(method, missing_url, json=body, headers=bearer(bob))
        error = assert_error(theirs, 404, "session_not_found")
        other = assert_error(missing, 404, "session_not_found")
        assert error["message"].replace(session_id, "ID") == other["message"].replace("sess_doesnotexist", "ID")
    assert session_id not in {item["session_id"] for item in _sessions(server, bob).json()["data"]}
    assert path.read_bytes() == before
    assert httpx.get(url, headers=bearer(alice)).status_code == 200


def test_chatting_with_another_users_session_id_is_a_404_and_writes_nothing(
    server: RunningServer, alice_and_bob: tuple[str, str]
) -> None:
    alice, bob = alice_and_bob
    session_id = chat(server, alice, "Only mine").headers["X-Session-Id"]
    path = server.settings.data_dir / "conversations" / f"{session_id}.json"
    before = path.read_bytes()
    for attempt in (
        chat(server, bob, "Injected", session_id=session_id),
        chat(server, bob, "Injected", headers={"X-Session-Id": session_id}),
        chat(server, bob, "Injected", session_id=session_id, stream=True),
    ):
        assert_error(attempt, 404, "session_not_found")
    assert path.read_bytes() == before


def test_a_corrupt_session_file_is_reported_and_kept_aside(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    session_id = chat(server, token, "Soon to be damaged").headers["X-Session-Id"]
    path = server.settings.data_dir / "conversations" / f"{session_id}.json"
    damaged = path.read_bytes()[:-30]
    path.write_bytes(damaged)
    response = httpx.get(f"{server.base_url}/api/sessions/{session_id}", headers=bearer(token))
    assert_error(response, 500, "corrupt_data")
    quarantined = list(path.parent.glob(f"{session_id}.json.corrupt-*"))
    assert len(quarantined) == 1 and quarantined[0].read_bytes() == damaged
    assert _sessions(server, token).json()["total"] == 0
