"""Sign-in tokens: JWT signed with HS256 through python-jose.

Decoding pins `algorithms=["HS256"]` and checks the header first, so `alg: none`, other
algorithms (RS256 with the secret as a public key, the classic confusion attack) and JWE
(five-part, encrypted) tokens are refused before any key is used.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from jose import ExpiredSignatureError, JWTError, jwt  # type: ignore[import-untyped]

from backend.service_errors import Unauthenticated

ALGORITHM = "HS256"
ISSUER = "local-agentic-llm-server"
TOKEN_TYPE = "access"
MAX_TOKEN_CHARS = 4096


class InvalidToken(Unauthenticated):
    code = "invalid_token"


class ExpiredToken(Unauthenticated):
    code = "token_expired"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    """Seconds until the token expires."""


@dataclass(frozen=True)
class TokenClaims:
    username: str
    token_version: int
    account_uid: str
    """The account's random id: a later account under the same name has another one."""


class TokenCodec:
    """Issues and verifies sign-in tokens with one secret key."""

    def __init__(self, secret_key: str, lifetime_s: float) -> None:
        self._secret = secret_key
        self._lifetime_s = int(lifetime_s)

    def issue(self, username: str, token_version: int, account_uid: str, now: float | None = None) -> IssuedToken:
        issued_at = int(now if now is not None else time.time())
        claims = {
            "sub": username,
            "uid": account_uid,
            "iat": issued_at,
            "exp": issued_at + self._lifetime_s,
            "iss": ISSUER,
            "jti": secrets.token_hex(8),
            "typ": TOKEN_TYPE,
            "ver": token_version,
        }
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), self._lifetime_s)

    def verify(self, token: str) -> TokenClaims:
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise InvalidToken("Malformed token.")
        try:
            header = jwt.get_unverified_header(token)
        except JWTError:
            raise InvalidToken("Malformed token.") from None
        if header.get("alg") != ALGORITHM or "enc" in header or "crit" in header:
            raise InvalidToken("Token algorithm not accepted.")
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], issuer=ISSUER,
                options={"require_exp": True, "require_iat": True, "require_sub": True, "leeway": 0},
            )
        except ExpiredSignatureError:
            raise ExpiredToken("Token expired; sign in again.") from None
        except JWTError:
            raise InvalidToken("Invalid token.") from None
        version = claims.get("ver")
        account_uid = claims.get("uid")
        if claims.get("typ") != TOKEN_TYPE or not isinstance(version, int) or isinstance(version, bool):
            raise InvalidToken("Invalid token.")
        if not isinstance(account_uid, str) or not account_uid:
            # Tokens issued before accounts had a uid are refused too: their owner signs in once more.
            raise InvalidToken("Invalid token.")
        return TokenClaims(username=str(claims["sub"]), token_version=version, account_uid=account_uid)
