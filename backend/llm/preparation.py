"""The embedded engines' preparation pool: prompt rendering and grammar conversion, off the event loop and the model.

Each job is bounded (the schema limits, and a prompt longer than the context can hold is refused from
its length before the template runs), so two threads suffice. A job is handed `still_wanted`, which
raises `Abandoned` once its request has gone away, so a cancelled request stops at its next step and
never reaches the model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

PREPARATION_THREADS = 2

T = TypeVar("T")


class Abandoned(Exception):
    """Raised in the preparation thread when the request went away; its result is never used."""


class PreparationPool:
    def __init__(self, thread_name_prefix: str) -> None:
        self.executor = ThreadPoolExecutor(max_workers=PREPARATION_THREADS, thread_name_prefix=thread_name_prefix)

    async def run(self, job: Callable[[Callable[[], None]], T]) -> T:
        abandoned = threading.Event()

        def still_wanted() -> None:
            if abandoned.is_set():
                raise Abandoned

        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, job, still_wanted)
        finally:
            abandoned.set()  # after a cancellation the thread stops at its next step; its result is dropped

    async def aclose(self) -> None:
        await asyncio.to_thread(self.executor.shutdown, True, cancel_futures=True)
