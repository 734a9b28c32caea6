"""The one JSON storage module: every JSON file under DATA_DIR is read and written through it.

Why it looks like this: several uvicorn workers (processes) share one DATA_DIR, and a crash or a
SIGKILL can hit in the middle of a write. So every write goes to a temp file in the same folder,
is flushed and fsynced, then `os.replace`d over the target and the folder is fsynced: readers see
the old file or the new one, never half of one. Every read-modify-write holds a per-file lock
(`filelock`, an OS-level `flock`) that excludes other threads *and* other processes. A file that
does not parse is never silently replaced by an empty one: it is moved aside to
`<name>.corrupt-<time>`, logged as an error, and reported with `CorruptJSONFile` (which, like the
store's other failures, lives in `service_errors` so that routes never import storage).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

from backend.service_errors import CorruptJSONFile, OutsideDataDir, StoreBusy
from backend.storage.private_paths import PRIVATE_FILE_MODE, make_private_dirs

logger = logging.getLogger(__name__)

T = TypeVar("T")
JSONValue = Any
"""What `json.loads` returns: dict, list, str, int, float, bool or None."""

LOCK_SUFFIX = ".lock"
TEMP_SUFFIX = ".tmp"
CORRUPT_MARKER = ".corrupt-"
DEFAULT_LOCK_TIMEOUT_S = 30.0
STALE_TEMP_AGE_S = 3600.0


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable: without this a power loss can undo an `os.replace`."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int = PRIVATE_FILE_MODE) -> None:
    """Replace `path` with `data` so that a crash at any point leaves either the old or the new file.

    The caller holds the file's lock when other writers may exist. New folders on the way are 0700.
    """
    folder = path.parent
    make_private_dirs(folder)
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_folder(folder)


def _encode(value: JSONValue) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=False).encode("utf-8")


class JsonStore:
    """Crash-safe, lock-protected JSON files below one root folder.

    The sync methods (`load`, `modify`, `remove`) do blocking I/O and are meant for worker threads,
    other processes and start-up code; the async ones (`read`, `update`, `delete`) run them in a
    thread so the event loop never waits on a disk or a lock. Every write is a read-modify-write
    (`modify`/`update`): no caller replaces a file blindly, which would drop a concurrent change.
    """

    def __init__(self, root: Path, lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.root = root.resolve()
        self.lock_timeout_s = lock_timeout_s
        # Requests of this process for the same file queue here, not in the thread pool: a burst of
        # writers to one conversation must not occupy every worker thread while waiting on the flock.
        self._async_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # --- paths and locks

    def _checked(self, path: Path) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise OutsideDataDir(f"{path} is outside {self.root}")
        return resolved

    @contextlib.contextmanager
    def locked(self, path: Path) -> Iterator[Path]:
        """Hold the inter-process lock of `path` (blocking); yields the checked path."""
        checked = self._checked(path)
        make_private_dirs(checked.parent)
        # filelock's default is 0644 under the umask; a lock file is as private as the file it guards.
        lock = FileLock(str(checked) + LOCK_SUFFIX, timeout=self.lock_timeout_s, mode=PRIVATE_FILE_MODE)
        try:
            lock.acquire()
        except Timeout as error:
            raise StoreBusy(f"{checked.name} stayed locked for more than {self.lock_timeout_s:g} s") from error
        try:
            yield checked
        finally:
            lock.release()

    def _async_lock(self, path: Path) -> asyncio.Lock:
        key = str(self._checked(path))
        lock = self._async_locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._async_locks[key] = lock
        return lock

    # --- reading

    def _parse(self, path: Path) -> JSONValue:
        """Parse `path`; `FileNotFoundError` when it does not exist; `ValueError` when it does not parse."""
        raw = path.read_bytes()
        return json.loads(raw.decode("utf-8"))

    def _quarantine(self, path: Path, reason: str) -> CorruptJSONFile:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        target = path.with_name(f"{path.name}{CORRUPT_MARKER}{stamp}")
        os.replace(path, target)
        _fsync_folder(path.parent)
        error = CorruptJSONFile(path, target, reason)
        logger.error("Corrupt JSON file quarantined: %s", error)
        return error

    def _load_locked(self, path: Path, default: Callable[[], T]) -> JSONValue | T:
        try:
            return self._parse(path)
        except FileNotFoundError:
            return default()
        except ValueError as problem:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise self._quarantine(path, str(problem)) from problem

    def load(self, path: Path, default: Callable[[], T] = lambda: None) -> JSONValue | T:  # type: ignore[assignment,return-value]
        """The parsed content of `path`, or `default()` if it does not exist.

        Reads take no lock (writes are atomic renames, so a reader sees a whole file); only when a
        file fails to parse is the lock taken, to re-check and quarantine it without racing a writer.
        """
        checked = self._checked(path)
        try:
            return self._parse(checked)
        except FileNotFoundError:
            return default()
        except ValueError:
            with self.locked(checked):
                return self._load_locked(checked, default)

    # --- writing

    def modify(self, path: Path, change: Callable[[JSONValue | T], JSONValue], default: Callable[[], T]) -> JSONValue:
        """Read-modify-write under the lock: `change(current)` returns the new value, which is saved.

        `current` is `default()` when the file does not exist. If `change` raises, nothing is
        written and the exception propagates, so it can refuse a change (e.g. "not your session").
        """
        with self.locked(path) as checked:
            current = self._load_locked(checked, default)
            new_value = change(current)
            write_atomically(checked, _encode(new_value))
            return new_value

    def remove(
        self, path: Path, check: Callable[[JSONValue], None] | None = None, *, drop_lock_file: bool = True
    ) -> bool:
        """Delete `path`; True if it existed. `check(current)` runs first under the lock and may raise to refuse.

        The lock file goes too (while still held), so deleted conversations leave nothing behind.
        That is safe with filelock >= 3.13: a waiter that then wins the flock of the unlinked lock
        file sees `st_nlink == 0` and starts over on the path, so exclusion is kept.
        """
        with self.locked(path) as checked:
            if check is not None:
                check(self._load_locked(checked, lambda: None))
            try:
                checked.unlink()
                existed = True
            except FileNotFoundError:
                existed = False
            else:
                _fsync_folder(checked.parent)
            if drop_lock_file:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(checked) + LOCK_SUFFIX)
            return existed

    def sweep_stale_temp_files(self, folder: Path, older_than_s: float = STALE_TEMP_AGE_S) -> int:
        """Remove temp files left by writers that died mid-write; young ones may belong to a live writer."""
        checked = self._checked(folder)
        if not checked.is_dir():
            return 0
        removed = 0
        cutoff = time.time() - older_than_s
        for candidate in checked.glob(f".*{TEMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if candidate.stat().st_mtime < cutoff:
                    candidate.unlink()
                    removed += 1
        return removed

    # --- async API: the same operations, off the event loop

    async def read(self, path: Path, default: Callable[[], T] = lambda: None) -> JSONValue | T:  # type: ignore[assignment,return-value]
        return await asyncio.to_thread(self.load, path, default)

    async def update(
        self, path: Path, change: Callable[[JSONValue | T], JSONValue], default: Callable[[], T] = dict  # type: ignore[assignment]
    ) -> JSONValue:
        """Async `modify`: `change` runs in a worker thread while the file's lock is held."""
        async with self._async_lock(path):
            return await asyncio.to_thread(self.modify, path, change, default)

    async def delete(self, path: Path, check: Callable[[JSONValue], None] | None = None) -> bool:
        async with self._async_lock(path):
            return await asyncio.to_thread(self.remove, path, check)
