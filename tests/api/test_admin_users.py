"""/api/admin/users: admins list, create, change and delete accounts; deletion removes all of a user's data."""

from __future__ import annotations

import httpx

from tests.api.account_helpers import (
    PASSWORD,
    admin_token,
    assert_error,
    bearer,
    chat,
    create_api_key,
    create_user,
    login,
    new_user_token,
    unique_name,
)
from tests.conftest import RunningServer


def _users_url(server: RunningServer, username: str = "") -> str:
    return f"{server.base_url}/api/admin/users" + (f"/{username}" if username else "")


def test_admin_creates_and_lists_users_without_exposing_hashes(server: RunningServer) -> None:
    admin = admin_token(server)
    name = unique_name()
    created = httpx.post(_users_url(server), json={"username": name, "password": PASSWORD}, headers=bearer(admin),
                         timeout=30)
    assert created.status_code == 201
    assert created.json()["role"] == "user" and created.json()["disabled"] is False
    listed = httpx.get(_users_url(server), headers=bearer(admin)).json()
    entry = next(user for user in listed["data"] if user["username"] == name)
    assert set(entry) == {"username", "role", "disabled", "created_at", "updated_at"}
    assert listed["total"] == len(listed["data"])
    assert_error(httpx.post(_users_url(server), json={"username": name, "password": PASSWORD},
                            headers=bearer(admin), timeout=30), 409, "user_exists")


def test_invalid_new_users_are_refused_naming_the_field(server: RunningServer) -> None:
    admin = admin_token(server)
    cases = [
        ({"username": "../../etc", "password": PASSWORD}, 400, "username"),
        ({"username": unique_name(), "password": "short"}, 422, "password"),
        ({"username": unique_name(), "password": "p" * 73}, 422, "password"),
        ({"username": unique_name(), "password": PASSWORD, "role": "root"}, 400, "role"),
        ({"username": unique_name(), "password": PASSWORD, "is_admin": True}, 400, "is_admin"),
    ]
    for body, status, param in cases:
        response = httpx.post(_users_url(server), json=body, headers=bearer(admin), timeout=30)
        assert assert_error(response, status)["param"] == param, body


def test_admin_changes_role_and_password(server: RunningServer) -> None:
    admin = admin_token(server)
    name, token = new_user_token(server, admin)
    promoted = httpx.patch(_users_url(server, name), json={"role": "admin"}, headers=bearer(admin))
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    assert httpx.get(_users_url(server), headers=bearer(token)).status_code == 200  # now an admin

    reset = httpx.patch(_users_url(server, name), json={"password": "a-fresh-password"}, headers=bearer(admin),
                        timeout=30)
    assert reset.status_code == 200
    assert_error(httpx.get(f"{server.base_url}/api/auth/me", headers=bearer(token)), 401, "token_revoked")
    assert login(server.base_url, name, "a-fresh-password")
    assert_error(httpx.patch(_users_url(server, "no-such-user"), json={"role": "user"}, headers=bearer(admin)),
                 404, "user_not_found")


def test_users_get_403_on_admin_routes(server: RunningServer) -> None:
    admin = admin_token(server)
    victim = create_user(server, admin)
    _, user = new_user_token(server, admin)
    assert_error(httpx.get(_users_url(server), headers=bearer(user)), 403, "admin_required")
    assert_error(httpx.patch(_users_url(server, victim), json={"disabled": True}, headers=bearer(user)), 403)
    assert_error(httpx.delete(_users_url(server, victim), headers=bearer(user)), 403)
    key = create_api_key(server, user)["key"]
    assert_error(httpx.get(_users_url(server), headers=bearer(key)), 403, "admin_required")
    assert login(server.base_url, victim, PASSWORD)  # untouched


def test_admins_cannot_lock_themselves_out(server: RunningServer) -> None:
    admin = admin_token(server)
    me = server.settings.admin_username
    assert_error(httpx.delete(_users_url(server, me), headers=bearer(admin)), 409, "own_account")
    assert_error(httpx.patch(_users_url(server, me), json={"role": "user"}, headers=bearer(admin)), 409)
    assert_error(httpx.patch(_users_url(server, me), json={"disabled": True}, headers=bearer(admin)), 409)
    assert httpx.get(_users_url(server), headers=bearer(admin)).status_code == 200


def test_deleting_a_user_removes_their_conversations_keys_and_folders(server: RunningServer) -> None:
    admin = admin_token(server)
    name, token = new_user_token(server, admin)
    key = create_api_key(server, token)["key"]
    session_ids = [chat(server, key, f"note {n}").headers["X-Session-Id"] for n in range(2)]
    _, bystander = new_user_token(server, admin)
    kept = chat(server, bystander, "I stay").headers["X-Session-Id"]
    data = server.settings.data_dir
    folders = [data / "files" / name, data / "vectors" / name]
    for folder in folders:
        (folder / "nested").mkdir(parents=True)
        (folder / "nested" / "doc.txt").write_text("user data")

    response = httpx.delete(_users_url(server, name), headers=bearer(admin), timeout=30)
    assert response.status_code == 200
    assert response.json() == {"username": name, "deleted": True,
                               "removed": {"api_keys": 1, "conversations": 2, "documents": 0, "folders": 2}}
    for session_id in session_ids:
        assert not (data / "conversations" / f"{session_id}.json").exists()
    assert all(not folder.exists() for folder in folders)
    assert (data / "conversations" / f"{kept}.json").exists()
    assert_error(httpx.get(f"{server.v1}/models", headers=bearer(key)), 401)
    assert_error(httpx.delete(_users_url(server, name), headers=bearer(admin)), 404, "user_not_found")
