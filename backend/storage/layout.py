"""Where everything lives under DATA_DIR. Every path built from user input is validated first.

Folders here are created with `private_paths.make_private_dirs` (0700) and files written 0600, like the JSON store's;
a user's own folders are created, listed and deleted through `user_folders.UserFolders`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
SAMPLES_DIR = Path(__file__).resolve().parents[2] / "data" / "samples"
"""Samples shipped with the repo (e.g. the sample SQLite database), readable by every user."""


class UnsafeName(ValueError):
    """An id or username that does not match the strict pattern and must never reach the file system."""


def safe_name(value: str, what: str = "name") -> str:
    if not SAFE_NAME.fullmatch(value) or value in {".", ".."}:
        raise UnsafeName(f"Invalid {what}: use 1-128 letters, digits, '_', '.' or '-'.")
    return value


@dataclass(frozen=True)
class DataLayout:
    root: Path

    @property
    def users_file(self) -> Path:
        return self.root / "users" / "users.json"

    @property
    def api_keys_file(self) -> Path:
        return self.root / "users" / "api_keys.json"

    @property
    def secret_key_file(self) -> Path:
        return self.root / "secret_key"

    @property
    def initial_admin_password_file(self) -> Path:
        return self.root / "initial_admin_password"

    @property
    def conversations_dir(self) -> Path:
        return self.root / "conversations"

    def conversation_file(self, session_id: str) -> Path:
        return self.conversations_dir / f"{safe_name(session_id, 'session id')}.json"

    # A user's own folders; their kinds and lifecycle are `user_folders.UserFolders`'.
    def user_files_dir(self, username: str) -> Path:
        """Uploaded documents of one user."""
        return self.root / "files" / safe_name(username, "username")

    def user_documents_file(self, username: str) -> Path:
        """Metadata of one user's documents (one record per document), beside the documents themselves."""
        return self.user_files_dir(username) / "documents.json"

    def document_dir(self, username: str, file_id: str) -> Path:
        """The folder holding one uploaded document (under its sanitised name)."""
        return self.user_files_dir(username) / safe_name(file_id, "file id")

    @property
    def incoming_uploads_dir(self) -> Path:
        """Uploads being received, outside every user's folder until they are accepted."""
        return self.root / "tmp" / "uploads"

    def user_vectors_dir(self, username: str) -> Path:
        """Vector index of one user's documents."""
        return self.root / "vectors" / safe_name(username, "username")

    def user_cache_dir(self, username: str) -> Path:
        """Data derived from one user's files and rebuilt on demand (e.g. SQL tables made from their CSVs)."""
        return self.root / "cache" / safe_name(username, "username")
