"""The JWT signing key: `SECRET_KEY` if set, else generated once into `DATA_DIR/secret_key` (0600).

Kept on disk so sign-in tokens survive restarts; created under the file's lock so that several
workers starting together all end up with the same key.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from backend.storage.json_store import JsonStore, write_atomically

logger = logging.getLogger(__name__)

MIN_SECRET_CHARS = 32


class SecretKeyError(SystemExit):
    """An unusable key file stops start-up with one clear line instead of voiding every token."""


def _read_key(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if len(text) < MIN_SECRET_CHARS:
        raise SecretKeyError(
            f"{path} holds a key shorter than {MIN_SECRET_CHARS} characters; fix it, or delete it to generate "
            "a new one (which signs everyone out)."
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("%s was readable by others (mode %o); restricting it to 0600", path, mode)
        os.chmod(path, 0o600)
    return text


def load_or_create_secret_key(configured: str | None, path: Path, store: JsonStore) -> str:
    """Blocking; call at start-up (in a thread from async code)."""
    if configured:
        return configured
    existing = _read_key(path)
    if existing is not None:
        return existing
    with store.locked(path):
        existing = _read_key(path)  # another worker may have won the race
        if existing is not None:
            return existing
        key = secrets.token_urlsafe(48)
        write_atomically(path, key.encode("utf-8"), mode=0o600)
        logger.info("Generated a new secret key in %s", path)
        return key
