"""API key material: generation, display prefix and the hash that is stored instead of the key.

Keys carry 256 random bits, so a plain SHA-256 is enough: there is nothing to brute-force,
unlike passwords, and a fast hash keeps per-request authentication cheap.
"""

from __future__ import annotations

import hashlib
import re
import secrets

API_KEY_PREFIX = "sk-"
DISPLAY_PREFIX_CHARS = 11
KEY_ID_PATTERN = re.compile(r"^key_[0-9a-f]{16}$")


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def looks_like_api_key(credential: str) -> bool:
    return credential.startswith(API_KEY_PREFIX)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_CHARS]
