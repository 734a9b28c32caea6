"""What the per-user indexes keep in memory: the most recently used users' loaded state, one lock per user.

Both indexes (FAISS, BM25) load a user's state from files another process may rewrite, so a cached state
carries the stamp of the file it was read from (`file_stamp`) and is used only while the stamp still matches.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Generic, TypeVar

FileStamp = tuple[int, int, int]
"""(inode, mtime_ns, size): a rename over the file or a rewrite changes it."""

State = TypeVar("State")


def file_stamp(path: Path) -> FileStamp | None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


class UserStateCache(Generic[State]):
    """A thread-safe LRU of per-user states, so memory stays bounded however many users there are."""

    def __init__(self, max_users: int) -> None:
        self._max_users = max_users
        self._states: OrderedDict[str, State] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, username: str) -> State | None:
        with self._lock:
            return self._states.get(username)

    def put(self, username: str, state: State) -> None:
        """Keep `state` as the user's, most recently used; the least recently used user beyond the bound goes."""
        with self._lock:
            self._states[username] = state
            self._states.move_to_end(username)
            while len(self._states) > self._max_users:
                self._states.popitem(last=False)

    def users(self) -> list[str]:
        """The users held, least recently used first."""
        with self._lock:
            return list(self._states)

    def forget(self, username: str) -> None:
        with self._lock:
            self._states.pop(username, None)

    def clear(self) -> None:
        with self._lock:
            self._states.clear()


class UserLocks:
    """One asyncio lock per user: one user's index operations queue, other users' run beside them.

    Weakly held, so a user no one is waiting on costs nothing.
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, username: str) -> asyncio.Lock:
        lock = self._locks.get(username)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[username] = lock
        return lock
