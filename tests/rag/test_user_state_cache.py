"""The per-user state cache and locks the FAISS and BM25 indexes share."""

from __future__ import annotations

import asyncio
from pathlib import Path

from backend.rag.user_state_cache import UserLocks, UserStateCache, file_stamp


def test_the_least_recently_used_user_goes_when_the_bound_is_passed() -> None:
    cache: UserStateCache[str] = UserStateCache(max_users=2)
    cache.put("ann", "a")
    cache.put("ben", "b")
    assert cache.get("ann") == "a"
    cache.put("ann", "a")  # used again: ben is now the oldest
    cache.put("cat", "c")
    assert cache.users() == ["ann", "cat"]
    assert cache.get("ben") is None


def test_a_forgotten_or_cleared_user_is_read_again() -> None:
    cache: UserStateCache[int] = UserStateCache(max_users=4)
    cache.put("ann", 1)
    cache.put("ben", 2)
    cache.forget("ann")
    assert cache.users() == ["ben"]
    cache.clear()
    assert cache.users() == []


def test_a_rewritten_file_has_a_new_stamp_and_a_missing_one_none(tmp_path: Path) -> None:
    path = tmp_path / "chunks.json"
    assert file_stamp(path) is None
    path.write_text("[]")
    first = file_stamp(path)
    replacement = tmp_path / "new.json"
    replacement.write_text("[1]")
    replacement.replace(path)
    assert first is not None
    assert file_stamp(path) != first


async def test_one_users_lock_does_not_hold_up_another_user() -> None:
    locks = UserLocks()
    assert locks("ann") is locks("ann")
    ann = locks("ann")
    async with ann:
        ben = locks("ben")
        await asyncio.wait_for(ben.acquire(), timeout=1)
        assert ben.locked()
        assert ann.locked()
        ben.release()
