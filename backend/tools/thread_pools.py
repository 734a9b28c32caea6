"""A tool family's own bounded thread pool, with a fair share per user.

Blocking tool work (SQL queries, data analysis) must not run on asyncio's default pool: that pool also
hashes passwords and writes the JSON store, so a few slow queries would stall every user's sign-in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from backend.per_user_limits import PerUserLimit

P = ParamSpec("P")
T = TypeVar("T")


class ToolThreadPool:
    """At most `max_workers` jobs run at once; one user has at most `per_user` queued or running."""

    def __init__(self, name: str, max_workers: int, per_user: int, what: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        self._limit = PerUserLimit(what, per_user)

    def in_flight(self, user: str) -> int:
        return self._limit.in_flight(user)

    async def run(self, user: str, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`function` on the pool; `TooManyRequests` at once when `user`'s share is taken.

        The share is given back when the thread finishes, not when the caller stops waiting: a call
        abandoned at the registry's timeout still occupies its thread until the job ends.
        """
        with contextlib.ExitStack() as stack:
            stack.enter_context(self._limit.hold(user))
            future = self._executor.submit(function, *args, **kwargs)
            release = stack.pop_all()
        future.add_done_callback(lambda _: release.close())
        return await asyncio.wrap_future(future)

    async def aclose(self) -> None:
        """Drop queued jobs and wait for the running ones, which stop at their own deadlines."""
        await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
