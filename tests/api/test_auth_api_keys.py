"""API keys: shown once, stored as a hash, listed, used by the official OpenAI SDK, revoked at once."""

from __future__ import annotations

import hashlib
import json

import httpx
import openai
import pytest

from tests.api.account_helpers import (
    admin_token,
    assert_error,
    bearer,
    create_api_key,
    model_of,
    new_user_token,
)
from tests.conftest import RunningServer


def test_sdk_chats_with_a_new_key_and_fails_with_authentication_error_once_revoked(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    created = create_api_key(server, token, "laptop")
    key = created["key"]
    assert key.startswith("sk-") and len(key) > 40

    with openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0, timeout=60) as sdk:
        model = sdk.models.list().data[0].id
        raw = sdk.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=5,
            extra_body={"session_id": "key-hello"},
        )
        completion = raw.parse()
        assert completion.choices[0].message.content
        assert completion.model_extra and completion.model_extra["session_id"] == raw.headers["X-Session-Id"]

        revoked = httpx.delete(f"{server.base_url}/api/auth/api-keys/{created['id']}", headers=bearer(token))
        assert revoked.status_code == 200 and revoked.json() == {"id": created["id"], "deleted": True}

        with pytest.raises(openai.AuthenticationError) as caught:
            sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=3)
        assert caught.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            sdk.models.list()


def test_the_key_is_shown_once_and_only_its_hash_is_stored(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    created = create_api_key(server, token, "ci")
    key = created["key"]
    listed = httpx.get(f"{server.base_url}/api/auth/api-keys", headers=bearer(token)).json()["data"]
    assert listed == [{k: created[k] for k in ("id", "name", "prefix", "created_at", "last_used_at")}]
    assert "key" not in listed[0] and key.startswith(listed[0]["prefix"])

    stored = (server.settings.data_dir / "users" / "api_keys.json").read_text()
    assert key not in stored
    assert json.loads(stored)["keys"][created["id"]]["key_hash"] == hashlib.sha256(key.encode()).hexdigest()


def test_using_a_key_records_when_it_was_last_used(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    created = create_api_key(server, token)
    assert created["last_used_at"] is None
    assert httpx.get(f"{server.v1}/models", headers=bearer(created["key"])).status_code == 200
    listed = httpx.get(f"{server.base_url}/api/auth/api-keys", headers=bearer(token)).json()["data"]
    assert listed[0]["last_used_at"] is not None


def test_keys_are_private_to_their_owner(server: RunningServer) -> None:
    admin = admin_token(server)
    _, alice = new_user_token(server, admin)
    _, bob = new_user_token(server, admin)
    alices_key = create_api_key(server, alice)
    assert httpx.get(f"{server.base_url}/api/auth/api-keys", headers=bearer(bob)).json()["data"] == []
    response = httpx.delete(f"{server.base_url}/api/auth/api-keys/{alices_key['id']}", headers=bearer(bob))
    assert_error(response, 404, "api_key_not_found")
    missing = assert_error(
        httpx.delete(f"{server.base_url}/api/auth/api-keys/key_0000000000000000", headers=bearer(bob)), 404
    )
    others = response.json()["error"]
    assert {k: missing[k] for k in ("type", "param", "code")} == {k: others[k] for k in ("type", "param", "code")}
    assert httpx.get(f"{server.v1}/models", headers=bearer(alices_key["key"])).status_code == 200


def test_an_api_key_cannot_mint_more_keys(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    key = create_api_key(server, token)["key"]
    response = httpx.post(f"{server.base_url}/api/auth/api-keys", json={"name": "more"}, headers=bearer(key))
    assert_error(response, 403, "sign_in_required")
    me = httpx.get(f"{server.base_url}/api/auth/me", headers=bearer(key))
    assert me.status_code == 200 and me.json()["auth_method"] == "api_key"


def test_made_up_keys_are_refused_with_401(server: RunningServer) -> None:
    response = httpx.get(f"{server.v1}/models", headers=bearer("sk-" + "x" * 43))
    assert_error(response, 401, "invalid_api_key")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_key_names_are_validated(server: RunningServer) -> None:
    _, token = new_user_token(server, admin_token(server))
    response = httpx.post(f"{server.base_url}/api/auth/api-keys", json={"name": ""}, headers=bearer(token))
    assert assert_error(response, 400)["param"] == "name"


def test_a_deleted_users_keys_stop_working(server: RunningServer) -> None:
    admin = admin_token(server)
    name, token = new_user_token(server, admin)
    key = create_api_key(server, token)["key"]
    assert httpx.get(f"{server.v1}/models", headers=bearer(key)).status_code == 200
    httpx.delete(f"{server.base_url}/api/admin/users/{name}", headers=bearer(admin)).raise_for_status()
    assert_error(httpx.get(f"{server.v1}/models", headers=bearer(key)), 401, "invalid_api_key")
    assert model_of(server, server.api_key)  # the admin's own key is unaffected
