"""First start: with no users at all, create the admin from `ADMIN_USERNAME` / `ADMIN_PASSWORD`.

Without `ADMIN_PASSWORD` a strong password is generated, printed once on the console and written
to `DATA_DIR/initial_admin_password` (0600); no password is ever a literal in the source. That file
is deleted as soon as the password it holds is no longer the admin's (`forget_initial_password`
on every password change, and a check at each start for changes made while it was not running).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path

from backend.auth.models import USERNAME_PATTERN, UserRecord
from backend.auth.passwords import (
    MAX_PASSWORD_BYTES,
    PasswordRejected,
    check_policy,
    generate_password,
    hash_password_sync,
    verify_password,
)
from backend.storage.json_store import write_atomically
from backend.storage.timestamps import utc_now_iso
from backend.storage.user_repository import UserRepository

logger = logging.getLogger(__name__)


class AdminBootstrapError(SystemExit):
    """Start-up cannot create the first admin from the settings given."""


async def bootstrap_admin(
    users: UserRepository, username: str, configured_password: str | None, password_file: Path
) -> UserRecord | None:
    """Create the first admin if there are no users; returns it, or None when users already exist."""
    if not USERNAME_PATTERN.fullmatch(username):
        raise AdminBootstrapError(
            "Invalid setting ADMIN_USERNAME: use 3-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit."
        )
    if configured_password is not None:
        try:
            check_policy(configured_password, param="ADMIN_PASSWORD")
        except PasswordRejected as error:
            raise AdminBootstrapError(f"Invalid setting ADMIN_PASSWORD: {error.message}") from None
    existing = await users.list_all()
    if existing:
        await _forget_stale_initial_password(existing, password_file)
        return None
    generated: list[str] = []

    def make_admin() -> UserRecord:
        # Runs under the users file's lock: of several workers starting at once only one gets here.
        password = configured_password
        if password is None:
            password = generate_password()
            generated.append(password)
            write_atomically(password_file, (password + "\n").encode("utf-8"), mode=0o600)
        now = utc_now_iso()
        return UserRecord(
            username=username, password_hash=hash_password_sync(password), role="admin",
            created_at=now, updated_at=now,
        )

    created = await users.create_first(make_admin)
    if created is not None:
        logger.warning("Created the first admin account '%s'", username)
        if generated:
            banner = (
                f"\n{'=' * 64}\n  First admin account created.\n  username: {username}\n"
                f"  password: {generated[0]}\n  (also in {password_file}, mode 0600; shown only once)\n{'=' * 64}\n"
            )
            print(banner, file=sys.stderr, flush=True)
    return created


def _read_initial_password(password_file: Path) -> str | None:
    """The generated password in the file, or None when there is no file; junk reads as ''."""
    try:
        text = password_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""
    return text if 0 < len(text.encode("utf-8")) <= MAX_PASSWORD_BYTES else ""


def _delete(password_file: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        password_file.unlink()


async def forget_initial_password(password_file: Path, replaced_hash: str) -> bool:
    """Delete the generated first-admin password if it was the one `replaced_hash` (now changed) checked.

    Costs one bcrypt check, only while the file exists: a password change of any other account leaves it.
    """
    password = await asyncio.to_thread(_read_initial_password, password_file)
    if not password or not await verify_password(password, replaced_hash):
        return False
    await asyncio.to_thread(_delete, password_file)
    logger.warning("The admin's password was changed; deleted %s", password_file)
    return True


async def _forget_stale_initial_password(records: list[UserRecord], password_file: Path) -> None:
    password = await asyncio.to_thread(_read_initial_password, password_file)
    if password is None:
        return
    for record in records:
        if record.role == "admin" and password and await verify_password(password, record.password_hash):
            return  # still the admin's password: the operator may not have read it yet
    await asyncio.to_thread(_delete, password_file)
    logger.warning("%s no longer held an admin's password; deleted it", password_file)
