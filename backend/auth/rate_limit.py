"""In-memory rate limiter of requests per user per minute (password guesses: see `login_throttle`).

State lives in the process: with several uvicorn workers each one counts on its own, so the
effective limit is at most workers x the setting. That keeps every request free of disk writes;
a shared store (Redis) would be the next step for a fleet of servers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
MAX_TRACKED_KEYS = 100_000
"""Bound on remembered keys, so a flood of made-up usernames cannot grow memory without limit."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RequestRateLimiter:
    """Token bucket per key: `per_minute` requests, refilled continuously, bursts up to `per_minute`."""

    def __init__(self, per_minute: int, clock: Clock = time.monotonic) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def acquire(self, key: str) -> float:
        """Take one request for `key`: 0.0 when allowed, else the seconds until one is available."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_KEYS:
                self._forget_full_buckets(now)
            bucket = self._buckets[key] = _Bucket(float(self.per_minute), now)
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def _forget_full_buckets(self, now: float) -> None:
        for key in [key for key, bucket in self._buckets.items() if now - bucket.updated >= 60.0]:
            del self._buckets[key]
