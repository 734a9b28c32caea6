"""Password guessing against a real server, written as the attacks: a stranger cannot lock the owner out,
cannot dodge the throttle with a made-up X-Forwarded-For, and a stolen token cannot brute-force the password."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.api.account_helpers import PASSWORD, admin_token, assert_error, bearer, create_user
from tests.conftest import RunningServer, ServerThread, credential_for, make_settings

STRANGER = "203.0.113.5"
OWNER_HOME = "198.51.100.7"
NGINX = "172.30.80.2"
"""The compose file's fixed nginx address: a server trusting only it treats loopback peers as clients."""


@contextmanager
def _server(data_dir: Path, **overrides: object) -> Iterator[RunningServer]:
    settings = make_settings(data_dir, **overrides)
    with ServerThread(settings) as base_url:
        yield RunningServer(base_url=base_url, settings=settings, api_key=credential_for(base_url, settings))


def _login(server: RunningServer, username: str, password: str, claimed_address: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": claimed_address} if claimed_address else {}
    return httpx.post(f"{server.base_url}/api/auth/login", json={"username": username, "password": password},
                      headers=headers, timeout=30)


async def _guess_all(server: RunningServer, guesses: list[tuple[str, str]]) -> list[httpx.Response]:
    """One wrong sign-in per (username, claimed X-Forwarded-For), all sent at once."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60,
                                 limits=httpx.Limits(max_connections=len(guesses))) as client:
        return list(await asyncio.gather(*(
            client.post("/api/auth/login", json={"username": name, "password": "wrong-password"},
                        headers={"X-Forwarded-For": address})
            for name, address in guesses
        )))


def _statuses(responses: list[httpx.Response]) -> Counter[int]:
    codes = {401: "invalid_credentials", 429: "too_many_login_attempts"}
    for response in responses:
        assert_error(response, response.status_code, codes.get(response.status_code))
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
    return Counter(response.status_code for response in responses)


async def test_a_strangers_50_wrong_guesses_from_one_address_do_not_stop_the_owner_signing_in_from_another(
    tmp_path: Path,
) -> None:
    # Defaults: 5 free failures per name and address, 50 per address, 100 per name. The proxy (loopback) is trusted.
    with _server(tmp_path) as server:
        owner = create_user(server, admin_token(server))
        started = time.monotonic()
        statuses = _statuses(await _guess_all(server, [(owner, STRANGER)] * 50))
        assert statuses == {401: 5, 429: 45}  # five bcrypt checks; the rest refused at once
        assert time.monotonic() - started < 15

        assert_error(_login(server, owner, PASSWORD, STRANGER), 429, "too_many_login_attempts")  # even if right
        signed_in = _login(server, owner, PASSWORD, OWNER_HOME)
        assert signed_in.status_code == 200, signed_in.text
        me = httpx.get(f"{server.base_url}/api/auth/me", headers=bearer(signed_in.json()["access_token"]), timeout=10)
        assert me.status_code == 200 and me.json()["username"] == owner


async def test_a_stranger_spraying_many_names_fills_only_their_own_addresss_ceiling(tmp_path: Path) -> None:
    with _server(tmp_path, login_max_failures_per_address=8) as server:
        owner = create_user(server, admin_token(server))
        sprayed = _statuses(await _guess_all(server, [(f"guess-{index}", STRANGER) for index in range(30)]))
        assert sprayed == {401: 8, 429: 22}
        assert_error(_login(server, owner, PASSWORD, STRANGER), 429, "too_many_login_attempts")
        assert _login(server, owner, PASSWORD, OWNER_HOME).status_code == 200


async def test_guesses_behind_made_up_x_forwarded_for_from_an_untrusted_peer_all_count_against_the_peer(
    tmp_path: Path,
) -> None:
    with _server(tmp_path, forwarded_allow_ips=NGINX, login_free_failures=3,
                 login_max_failures_per_address=5) as server:
        # One name, a new claimed address each time: all of them are the loopback peer's pair.
        same_name = _statuses(await _guess_all(server, [("alice", f"10.0.0.{index}") for index in range(10)]))
        assert same_name == {401: 3, 429: 7}
        # Many names, each from a "different" address: two more fit under the peer's ceiling of five.
        spread = _statuses(await _guess_all(server, [(f"guess-{index}", f"10.1.0.{index}") for index in range(20)]))
        assert spread == {401: 2, 429: 18}
        refused = _login(server, "bob", "wrong-password", "192.0.2.44, 10.9.9.9")
        assert_error(refused, 429, "too_many_login_attempts")
        assert 150 <= int(refused.headers["Retry-After"]) <= 180  # the peer's ceiling: one failure per 900 s / 5


def test_the_progressive_delay_doubles_with_each_wrong_answer(tmp_path: Path) -> None:
    with _server(tmp_path, login_free_failures=1) as server:
        owner = create_user(server, admin_token(server))
        waits: list[int] = []
        for _ in range(3):
            if waits:
                time.sleep(waits[-1] + 0.05)  # wait as told: the next guess is checked, and answered 401
            assert_error(_login(server, owner, "wrong-password", STRANGER), 401, "invalid_credentials")
            refused = _login(server, owner, "wrong-password", STRANGER)
            assert_error(refused, 429, "too_many_login_attempts")
            waits.append(int(refused.headers["Retry-After"]))
        assert waits == [1, 2, 4]
        assert _login(server, owner, PASSWORD, OWNER_HOME).status_code == 200  # the owner never waited


def test_brute_forcing_the_current_password_with_a_stolen_token_gets_429(tmp_path: Path) -> None:
    with _server(tmp_path, login_free_failures=3) as server:
        owner = create_user(server, admin_token(server))
        stolen = _login(server, owner, PASSWORD, OWNER_HOME).json()["access_token"]

        def change(current: str, address: str) -> httpx.Response:
            return httpx.put(f"{server.base_url}/api/auth/me/password", headers={**bearer(stolen),
                             "X-Forwarded-For": address},
                             json={"current_password": current, "new_password": "a-new-password-9"}, timeout=30)

        for index in range(3):
            assert_error(change(f"guess-{index}-pw", STRANGER), 400, "wrong_password")
        started = time.monotonic()
        for current in ("guess-3-pw", PASSWORD):  # past the free guesses even the right one waits
            refused = change(current, STRANGER)
            assert_error(refused, 429, "too_many_password_attempts")
            assert refused.json()["error"]["type"] == "rate_limit_error"
            assert refused.headers["Retry-After"] == "1"
        assert time.monotonic() - started < 2  # refused before any bcrypt check
        assert_error(_login(server, owner, "wrong-password", STRANGER), 429, "too_many_login_attempts")

        # The owner, at home, changes the password; the stolen token dies with it.
        assert change(PASSWORD, OWNER_HOME).status_code == 200
        revoked = httpx.get(f"{server.base_url}/api/auth/me", headers=bearer(stolen), timeout=10)
        assert_error(revoked, 401, "token_revoked")
