"""Sign-in, per-request authentication (sign-in token or API key), self sign-up and API key management."""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from backend.auth.api_keys import (
    display_prefix,
    hash_api_key,
    looks_like_api_key,
    new_api_key,
    new_key_id,
)
from backend.auth.login_throttle import CountedGuess, LoginThrottle
from backend.auth.models import ApiKeyRecord, User, UserRecord
from backend.auth.passwords import check_length, hash_password_sync, verify_password
from backend.auth.tokens import IssuedToken, TokenCodec
from backend.auth.user_service import UserService
from backend.service_errors import Forbidden, InvalidInput, TooManyRequests, Unauthenticated
from backend.storage.api_key_repository import ApiKeyRepository
from backend.storage.timestamps import utc_now_iso
from backend.storage.user_repository import UserRepository

logger = logging.getLogger(__name__)

MAX_API_KEYS_PER_USER = 100
LAST_USED_RESOLUTION = timedelta(seconds=60)
"""`last_used_at` is rewritten at most this often per key, so busy keys do not cost a disk write each."""


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"


class SignupDisabled(Forbidden):
    code = "signup_disabled"


class NeedsSignIn(Forbidden):
    """Some actions need a password sign-in: a leaked API key must not be able to mint more keys."""

    code = "sign_in_required"


@dataclass(frozen=True)
class SignIn:
    token: IssuedToken
    user: UserRecord


@dataclass(frozen=True)
class _Refusal:
    """What a throttled guess is told (with `Retry-After`)."""

    message: str
    code: str


_TOO_MANY_SIGN_INS = _Refusal("Too many failed sign-ins; try again later.", "too_many_login_attempts")
_TOO_MANY_PASSWORD_CHECKS = _Refusal("Too many wrong current passwords; try again later.", "too_many_password_attempts")


@dataclass(frozen=True)
class NewApiKey:
    record: ApiKeyRecord
    key: str
    """The key itself: shown once, never stored."""


class AuthService:
    def __init__(
        self,
        users: UserRepository,
        api_keys: ApiKeyRepository,
        accounts: UserService,
        tokens: TokenCodec,
        login_throttle: LoginThrottle,
        allow_signup: bool,
    ) -> None:
        self._users = users
        self._api_keys = api_keys
        self._accounts = accounts
        self._tokens = tokens
        self._throttle = login_throttle
        self._allow_signup = allow_signup
        self._dummy_hash: str | None = None

    async def _hash_for_unknown_user(self) -> str:
        # Checking a password against a real bcrypt hash even for unknown names makes a failed
        # sign-in take the same time whether or not the name exists (no user enumeration by timing).
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(hash_password_sync, secrets.token_urlsafe(16))
        return self._dummy_hash

    # --- sign-in

    def _begin_guess(self, username: str, client_address: str, refusal: _Refusal) -> CountedGuess:
        """Check the throttle and count this guess as a failure at once, before the slow password check.

        Nothing is awaited between the check and the count, so guesses sent in parallel each see the
        ones before them: past the limit the rest get 429 instead of a password check.
        """
        wait = self._throttle.retry_after(username, client_address)
        if wait > 0:
            raise TooManyRequests(refusal.message, wait, code=refusal.code)
        return self._throttle.count(username, client_address)

    def _sign_in(self, record: UserRecord) -> SignIn:
        return SignIn(self._tokens.issue(record.username, record.token_version, record.uid), record)

    async def login(self, username: str, password: str, client_address: str) -> SignIn:
        check_length(password)
        guess = self._begin_guess(username, client_address, _TOO_MANY_SIGN_INS)
        record = await self._users.get(username)
        password_hash = record.password_hash if record else await self._hash_for_unknown_user()
        valid = await verify_password(password, password_hash)
        if record is None or not valid:
            self._throttle.failed(guess)
            logger.info("Failed sign-in for %r from %s", username, client_address)
            raise InvalidCredentials("Incorrect username or password.")
        self._throttle.succeeded(guess)  # the right password: no failure, and a familiar address from now on
        if record.disabled:
            raise InvalidCredentials("This account is disabled.", code="account_disabled")
        return self._sign_in(record)

    async def signup(self, username: str, password: str, client_address: str) -> SignIn:
        if not self._allow_signup:
            raise SignupDisabled("Self sign-up is disabled on this server; ask an admin for an account.")
        # Every attempt counts against the address, so sign-up cannot be used to mass-create accounts.
        wait = self._throttle.take_for_address(client_address)
        if wait > 0:
            raise TooManyRequests(_TOO_MANY_SIGN_INS.message, wait, code=_TOO_MANY_SIGN_INS.code)
        record = await self._accounts.create_user(username, password, "user")
        return self._sign_in(record)

    # --- per-request authentication

    async def authenticate(self, credential: str | None) -> User:
        """The user behind a Bearer credential (sign-in token or API key), or 401."""
        if not credential:
            raise Unauthenticated(
                "Missing credentials: send 'Authorization: Bearer <token or API key>'.", code="missing_credentials"
            )
        if looks_like_api_key(credential):
            return await self._authenticate_api_key(credential)
        claims = self._tokens.verify(credential)
        record = await self._active_user(claims.username, claims.account_uid)
        if record.token_version != claims.token_version:
            raise Unauthenticated("Token revoked; sign in again.", code="token_revoked")
        return record.principal("token")

    async def _active_user(self, username: str, account_uid: str | None = None) -> UserRecord:
        """The enabled account `username`; with `account_uid`, only if it is that very account.

        A deleted account re-created under the same name has a new uid, so the old one's credentials fail here.
        """
        record = await self._users.get(username)
        if record is None or (account_uid is not None and record.uid != account_uid):
            raise Unauthenticated("The account of this credential no longer exists.", code="invalid_credentials")
        if record.disabled:
            raise Unauthenticated("This account is disabled.", code="account_disabled")
        return record

    async def _authenticate_api_key(self, key: str) -> User:
        key_record = await self._api_keys.find_by_hash(hash_api_key(key))
        if key_record is None:
            raise Unauthenticated("Invalid API key.", code="invalid_api_key")
        record = await self._active_user(key_record.username, key_record.user_uid)
        now = datetime.now(UTC)
        last = datetime.fromisoformat(key_record.last_used_at) if key_record.last_used_at else None
        if last is None or now - last >= LAST_USED_RESOLUTION:
            await self._api_keys.touch(key_record.id, now.isoformat(timespec="microseconds"))
        return record.principal("api_key", key_record.id)

    # --- API keys

    async def create_api_key(self, user: User, name: str) -> NewApiKey:
        if user.auth_method != "token":
            raise NeedsSignIn("Creating API keys needs a sign-in token, not an API key.")
        key = new_api_key()
        record = ApiKeyRecord(
            id=new_key_id(), username=user.username, name=name, prefix=display_prefix(key),
            key_hash=hash_api_key(key), created_at=utc_now_iso(), user_uid=user.uid,
        )
        await self._api_keys.add(record, MAX_API_KEYS_PER_USER)
        return NewApiKey(record, key)

    async def list_api_keys(self, user: User) -> list[ApiKeyRecord]:
        return await self._api_keys.list_for(user.username)

    async def revoke_api_key(self, user: User, key_id: str) -> ApiKeyRecord:
        return await self._api_keys.revoke(user.username, key_id)

    # --- own account

    async def profile(self, user: User) -> UserRecord:
        return await self._active_user(user.username, user.uid)

    async def change_own_password(
        self, user: User, current_password: str, new_password: str, client_address: str
    ) -> SignIn:
        """Change the password after proving the current one; every older sign-in token stops working.

        Checks of `current_password` go through the sign-in throttle (same pair, same counters), so a
        stolen token cannot be used to guess the password faster than signing in could.
        """
        if user.auth_method != "token":
            raise NeedsSignIn("Changing the password needs a sign-in token, not an API key.")
        check_length(current_password, "current_password")
        record = await self._active_user(user.username, user.uid)
        guess = self._begin_guess(user.username, client_address, _TOO_MANY_PASSWORD_CHECKS)
        if not await verify_password(current_password, record.password_hash):
            self._throttle.failed(guess)
            logger.info("Wrong current password for %r from %s", user.username, client_address)
            raise InvalidInput("The current password is not correct.", param="current_password", code="wrong_password")
        self._throttle.succeeded(guess)
        updated = await self._accounts.update_user(user.username, password=new_password, acting=user)
        return self._sign_in(updated)
