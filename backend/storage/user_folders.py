"""Each user's own folders under DATA_DIR (uploads, vectors, derived cache): the one place that creates them
(0700), lists them and deletes them. Paths come from `DataLayout`; every call here is blocking file I/O.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Literal, get_args

from backend.storage.layout import DataLayout, safe_name
from backend.storage.private_paths import make_private_dirs

FolderKind = Literal["files", "vectors", "cache"]
"""`files`: the user's uploaded documents; `vectors`: their index; `cache`: data rebuilt on demand from files."""
FOLDER_KINDS: tuple[FolderKind, ...] = get_args(FolderKind)


class UserFolders:
    """The folders of every user, by kind; a user with nothing stored has none of them on disk."""

    def __init__(self, layout: DataLayout) -> None:
        self._paths: dict[FolderKind, Callable[[str], Path]] = {
            "files": layout.user_files_dir,
            "vectors": layout.user_vectors_dir,
            "cache": layout.user_cache_dir,
        }

    def path(self, username: str, kind: FolderKind, *inner: str) -> Path:
        """Where the folder is (or a folder inside it), whether or not it exists; every part is a safe name."""
        folder = self._paths[kind](username)
        return folder.joinpath(*(safe_name(part, "folder name") for part in inner))

    def create(self, username: str, kind: FolderKind, *inner: str) -> Path:
        """The folder, made with any missing parents, each new one 0700 whatever the umask; existing ones stay."""
        folder = self.path(username, kind, *inner)
        make_private_dirs(folder)
        return folder

    def existing(self, username: str) -> list[Path]:
        """The user's folders present on disk, in `FOLDER_KINDS` order."""
        return [folder for folder in (self.path(username, kind) for kind in FOLDER_KINDS) if folder.is_dir()]

    def delete_all(self, username: str) -> list[Path]:
        """Remove every folder of the user with all it holds; answers those that were there.

        A folder replaced by a symbolic link loses the link only: what it points to is not the user's to delete.
        """
        removed: list[Path] = []
        for kind in FOLDER_KINDS:
            folder = self.path(username, kind)
            if folder.is_symlink():
                folder.unlink()
            elif folder.is_dir():
                shutil.rmtree(folder)
            else:
                continue
            removed.append(folder)
        return removed
