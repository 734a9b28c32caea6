"""Modes of everything under DATA_DIR: folders 0700, files 0600, set explicitly whatever the umask is.

`Path.mkdir(mode=..., parents=True)` gives only the last folder that mode (the parents get the
default 0777 minus the umask) and even that one is masked by the umask, so folders are made here
one level at a time and each new one is `chmod`ed.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

PRIVATE_FOLDER_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dirs(folder: Path) -> None:
    """Create `folder` and any missing parents, each new one 0700; existing folders are left alone."""
    missing: list[Path] = []
    current = folder
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=PRIVATE_FOLDER_MODE)
        except FileExistsError:
            if not path.is_dir():
                raise
            continue  # made by another thread or worker meanwhile, which set its mode
        os.chmod(path, PRIVATE_FOLDER_MODE)


def make_private_data_dir(data_dir: Path) -> None:
    """Create DATA_DIR 0700, or restrict an existing one that others could enter (as the secret key is)."""
    make_private_dirs(data_dir)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        logger.warning("%s was mode %o; restricting it to %o", data_dir, mode, PRIVATE_FOLDER_MODE)
        os.chmod(data_dir, PRIVATE_FOLDER_MODE)
