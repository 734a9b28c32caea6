"""Fair shares of a scarce resource: at most N jobs in flight per user, so one user cannot starve the others.

Used for the embedded model's queue, the sandbox slots, the maths workers and SQL queries. A user past
their share is refused at once (429 with `Retry-After`) instead of waiting in line ahead of everyone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from backend.service_errors import TooManyRequests


class PerUserLimit:
    """Counts one user's jobs in flight. Thread-safe: tools may be entered from worker threads and tests' loops."""

    def __init__(self, what: str, per_user: int, *, retry_after_s: float = 2.0) -> None:
        if per_user < 1:
            raise ValueError("per_user must be at least 1")
        self.what = what
        self.per_user = per_user
        self._retry_after_s = retry_after_s
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def in_flight(self, user: str) -> int:
        with self._lock:
            return self._in_flight.get(user, 0)

    @contextmanager
    def hold(self, user: str) -> Iterator[None]:
        """One job of `user` for the duration of the block; `TooManyRequests` when their share is taken."""
        with self._lock:
            count = self._in_flight.get(user, 0)
            if count >= self.per_user:
                raise TooManyRequests(
                    f"You already have {count} {self.what} in progress (the limit per user); "
                    "wait for one to finish and retry.",
                    self._retry_after_s,
                    code="per_user_limit",
                )
            self._in_flight[user] = count + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._in_flight[user] - 1
                if left:
                    self._in_flight[user] = left
                else:
                    del self._in_flight[user]
