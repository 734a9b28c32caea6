"""Sign-in (JSON and OAuth2 form), /api/auth/me, and every way a bad credential is refused with 401."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from jose import jwe, jwt

from backend.auth.tokens import ISSUER
from tests.api.account_helpers import (
    PASSWORD,
    admin_token,
    assert_error,
    bearer,
    create_api_key,
    create_user,
    login,
    secret_key_of,
)
from tests.conftest import RunningServer


def _me(server: RunningServer, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{server.base_url}/api/auth/me", headers=headers, timeout=30)


def _assert_401(response: httpx.Response, code: str | None = None) -> None:
    assert_error(response, 401, code)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "authentication_error"


def _claims(username: str, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": username, "iat": now, "exp": now + 600, "iss": ISSUER, "typ": "access", "ver": 0,
    }
    claims.update(overrides)
    return claims


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_json_login_returns_a_bearer_token_with_expiry_and_user(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.base_url}/api/auth/login",
        json={"username": server.settings.admin_username, "password": server.settings.admin_password}, timeout=30,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == int(server.settings.jwt_expiration_hours * 3600)
    assert body["user"] == {"username": server.settings.admin_username, "role": "admin"}
    me = _me(server, bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == server.settings.admin_username and me.json()["auth_method"] == "token"
    assert "password_hash" not in me.json()


def test_oauth2_password_form_login_works_too(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.base_url}/api/auth/login",
        data={"grant_type": "password", "username": server.settings.admin_username,
              "password": server.settings.admin_password},
        timeout=30,
    )
    assert response.status_code == 200
    assert _me(server, bearer(response.json()["access_token"])).status_code == 200


def test_wrong_password_and_unknown_user_get_the_same_401(server: RunningServer) -> None:
    wrong = httpx.post(f"{server.base_url}/api/auth/login",
                       json={"username": server.settings.admin_username, "password": "not-the-password"}, timeout=30)
    unknown = httpx.post(f"{server.base_url}/api/auth/login",
                         json={"username": "nobody-here", "password": "not-the-password"}, timeout=30)
    _assert_401(wrong, "invalid_credentials")
    _assert_401(unknown, "invalid_credentials")
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


def test_password_over_72_bytes_is_a_422_not_a_truncated_match(server: RunningServer) -> None:
    response = httpx.post(f"{server.base_url}/api/auth/login",
                          json={"username": server.settings.admin_username, "password": "x" * 73}, timeout=30)
    error = assert_error(response, 422, "password_too_long")
    assert error["param"] == "password"


def test_login_without_a_field_is_a_400_naming_it(server: RunningServer) -> None:
    response = httpx.post(f"{server.base_url}/api/auth/login", json={"username": "admin"}, timeout=30)
    assert assert_error(response, 400)["param"] == "password"
    form = httpx.post(f"{server.base_url}/api/auth/login", data={"password": "x"}, timeout=30)
    assert assert_error(form, 400)["param"] == "username"
    broken = httpx.post(f"{server.base_url}/api/auth/login", content=b"{not json",
                        headers={"Content-Type": "application/json"}, timeout=30)
    assert_error(broken, 400, "invalid_body")


def test_missing_credentials_are_refused(server: RunningServer) -> None:
    _assert_401(_me(server, {}), "missing_credentials")
    _assert_401(_me(server, {"Authorization": "Basic YWRtaW46YWRtaW4="}), "missing_credentials")


def test_malformed_token_is_refused(server: RunningServer) -> None:
    _assert_401(_me(server, bearer("not-a-token")), "invalid_token")
    _assert_401(_me(server, bearer("a.b.c")), "invalid_token")


def test_tampered_token_is_refused(server: RunningServer) -> None:
    token = admin_token(server)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    _assert_401(_me(server, bearer(f"{header}.{_b64(claims)}.{signature}")), "invalid_token")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    _assert_401(_me(server, bearer(f"{header}.{payload}.{flipped}")), "invalid_token")


def test_expired_token_is_refused(server: RunningServer) -> None:
    past = int(time.time()) - 7200
    expired = jwt.encode(_claims(server.settings.admin_username, iat=past, exp=past + 60),
                         secret_key_of(server), algorithm="HS256")
    _assert_401(_me(server, bearer(expired)), "token_expired")


def test_alg_none_token_is_refused(server: RunningServer) -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(server.settings.admin_username))}."
    _assert_401(_me(server, bearer(unsigned)), "invalid_token")


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_token_with_another_algorithm_is_refused_even_with_the_real_key(server: RunningServer, algorithm: str) -> None:
    token = jwt.encode(_claims(server.settings.admin_username), secret_key_of(server), algorithm=algorithm)
    _assert_401(_me(server, bearer(token)), "invalid_token")


def test_jwe_token_is_refused(server: RunningServer) -> None:
    key = secret_key_of(server).encode()[:32]
    encrypted = jwe.encrypt(json.dumps(_claims(server.settings.admin_username)), key,
                            algorithm="dir", encryption="A256GCM").decode()
    _assert_401(_me(server, bearer(encrypted)), "invalid_token")


def test_tokens_of_deleted_and_disabled_users_are_refused(server: RunningServer) -> None:
    admin = admin_token(server)
    doomed = create_user(server, admin)
    paused = create_user(server, admin)
    doomed_token = login(server.base_url, doomed, PASSWORD)
    paused_token = login(server.base_url, paused, PASSWORD)
    assert _me(server, bearer(doomed_token)).status_code == 200

    assert httpx.delete(f"{server.base_url}/api/admin/users/{doomed}", headers=bearer(admin)).status_code == 200
    disabled = httpx.patch(f"{server.base_url}/api/admin/users/{paused}", json={"disabled": True},
                           headers=bearer(admin))
    assert disabled.status_code == 200
    _assert_401(_me(server, bearer(doomed_token)), "invalid_credentials")
    _assert_401(_me(server, bearer(paused_token)), "account_disabled")

    # Re-enabled, the old token stays void (disabling bumped its version); signing in works again.
    httpx.patch(f"{server.base_url}/api/admin/users/{paused}", json={"disabled": False}, headers=bearer(admin))
    _assert_401(_me(server, bearer(paused_token)), "token_revoked")
    assert _me(server, bearer(login(server.base_url, paused, PASSWORD))).status_code == 200


def test_tokens_of_a_deleted_user_stay_void_when_an_account_of_that_name_is_created_again(
    server: RunningServer,
) -> None:
    admin = admin_token(server)
    name = create_user(server, admin)
    old_token = login(server.base_url, name, PASSWORD)
    assert httpx.delete(f"{server.base_url}/api/admin/users/{name}", headers=bearer(admin)).status_code == 200
    create_user(server, admin, username=name)  # same name, same password, token version starts over at 0

    _assert_401(_me(server, bearer(old_token)), "invalid_credentials")
    assert _me(server, bearer(login(server.base_url, name, PASSWORD))).status_code == 200


def test_disabled_user_cannot_sign_in(server: RunningServer) -> None:
    admin = admin_token(server)
    name = create_user(server, admin)
    httpx.patch(f"{server.base_url}/api/admin/users/{name}", json={"disabled": True}, headers=bearer(admin))
    response = httpx.post(f"{server.base_url}/api/auth/login", json={"username": name, "password": PASSWORD})
    _assert_401(response, "account_disabled")


def test_changing_your_password_signs_out_older_tokens(server: RunningServer) -> None:
    admin = admin_token(server)
    name = create_user(server, admin)
    old_token = login(server.base_url, name, PASSWORD)
    wrong = httpx.put(f"{server.base_url}/api/auth/me/password", headers=bearer(old_token),
                      json={"current_password": "not-it", "new_password": "another-password-2"})
    assert assert_error(wrong, 400, "wrong_password")["param"] == "current_password"
    changed = httpx.put(f"{server.base_url}/api/auth/me/password", headers=bearer(old_token),
                        json={"current_password": PASSWORD, "new_password": "another-password-2"}, timeout=30)
    assert changed.status_code == 200
    _assert_401(_me(server, bearer(old_token)), "token_revoked")
    assert _me(server, bearer(changed.json()["access_token"])).status_code == 200
    assert _me(server, bearer(login(server.base_url, name, "another-password-2"))).status_code == 200


def test_changing_your_own_password_keeps_your_api_keys(server: RunningServer) -> None:
    name = create_user(server, admin_token(server))
    token = login(server.base_url, name, PASSWORD)
    key = create_api_key(server, token)["key"]
    changed = httpx.put(f"{server.base_url}/api/auth/me/password", headers=bearer(token),
                        json={"current_password": PASSWORD, "new_password": "another-password-2"}, timeout=30)
    assert changed.status_code == 200
    assert _me(server, bearer(key)).json()["auth_method"] == "api_key"


def test_an_admin_password_reset_signs_the_user_out_and_revokes_their_api_keys(server: RunningServer) -> None:
    admin = admin_token(server)
    name = create_user(server, admin)
    token = login(server.base_url, name, PASSWORD)
    key = create_api_key(server, token)["key"]
    reset = httpx.patch(f"{server.base_url}/api/admin/users/{name}", json={"password": "reset-by-admin-3"},
                        headers=bearer(admin), timeout=30)
    assert reset.status_code == 200
    _assert_401(_me(server, bearer(token)), "token_revoked")
    _assert_401(_me(server, bearer(key)), "invalid_api_key")
    fresh = login(server.base_url, name, "reset-by-admin-3")
    listed = httpx.get(f"{server.base_url}/api/auth/api-keys", headers=bearer(fresh), timeout=10)
    assert listed.json()["data"] == []


def test_signup_is_refused_when_not_enabled(server: RunningServer) -> None:
    assert not server.settings.allow_signup
    response = httpx.post(f"{server.base_url}/api/auth/signup",
                          json={"username": "newcomer", "password": "long-enough-pw"}, timeout=30)
    assert_error(response, 403, "signup_disabled")
