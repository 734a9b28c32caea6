"""Sign-in tokens: HS256 only, checked expiry, and every forged or foreign shape refused."""

from __future__ import annotations

import base64
import json
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwe, jwt

from backend.auth.tokens import ISSUER, ExpiredToken, InvalidToken, TokenCodec

SECRET = "a-test-signing-key-that-is-long-enough-0123456789"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "alice", "iat": now, "exp": now + 600, "iss": ISSUER, "typ": "access", "ver": 0, "jti": "x",
        "uid": "acct_alice",
    }
    claims.update(overrides)
    return claims


def test_issued_token_verifies_to_its_user_version_and_account_uid() -> None:
    codec = TokenCodec(SECRET, 3600)
    issued = codec.issue("alice", 3, "acct_123")
    claims = codec.verify(issued.token)
    assert (claims.username, claims.token_version, claims.account_uid) == ("alice", 3, "acct_123")
    assert issued.expires_in == 3600
    assert jwt.get_unverified_header(issued.token)["alg"] == "HS256"


def test_expired_token_is_refused_as_expired() -> None:
    codec = TokenCodec(SECRET, 60)
    old = codec.issue("alice", 0, "acct_alice", now=time.time() - 120)
    with pytest.raises(ExpiredToken) as caught:
        codec.verify(old.token)
    assert caught.value.status == 401 and caught.value.headers["WWW-Authenticate"] == "Bearer"


def test_token_signed_with_another_key_is_refused() -> None:
    forged = jwt.encode(_claims(), "some-other-key-of-sufficient-length-0123456789", algorithm="HS256")
    with pytest.raises(InvalidToken):
        TokenCodec(SECRET, 60).verify(forged)


def test_tampered_payload_is_refused() -> None:
    codec = TokenCodec(SECRET, 60)
    header, _, signature = codec.issue("alice", 0, "acct_alice").token.split(".")
    tampered = ".".join([header, _b64(_claims(sub="admin")), signature])
    with pytest.raises(InvalidToken):
        codec.verify(tampered)


def test_alg_none_token_is_refused() -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."
    with pytest.raises(InvalidToken, match="algorithm"):
        TokenCodec(SECRET, 60).verify(unsigned)


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_refused_even_with_the_right_key(algorithm: str) -> None:
    token = jwt.encode(_claims(), SECRET, algorithm=algorithm)
    with pytest.raises(InvalidToken, match="algorithm"):
        TokenCodec(SECRET, 60).verify(token)


def test_rs256_token_is_refused() -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    token = jwt.encode(_claims(), pem.decode(), algorithm="RS256")
    with pytest.raises(InvalidToken, match="algorithm"):
        TokenCodec(SECRET, 60).verify(token)


def test_jwe_encrypted_token_is_refused() -> None:
    key = SECRET.encode()[:32]
    encrypted = jwe.encrypt(json.dumps(_claims()), key, algorithm="dir", encryption="A256GCM").decode()
    assert encrypted.count(".") == 4
    with pytest.raises(InvalidToken, match="Malformed"):
        TokenCodec(key.decode(), 60).verify(encrypted)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 5000, "....", "e30.e30.e30"])
def test_malformed_tokens_are_refused(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        TokenCodec(SECRET, 60).verify(garbage)


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "ver", "uid"])
def test_token_missing_a_required_claim_is_refused(missing: str) -> None:
    claims = _claims()
    del claims[missing]
    with pytest.raises(InvalidToken):
        TokenCodec(SECRET, 60).verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_token_of_another_issuer_or_type_is_refused() -> None:
    codec = TokenCodec(SECRET, 60)
    foreign = [_claims(iss="someone-else"), _claims(typ="refresh"), _claims(ver="0"), _claims(uid=7), _claims(uid="")]
    for claims in foreign:
        with pytest.raises(InvalidToken):
            codec.verify(jwt.encode(claims, SECRET, algorithm="HS256"))
