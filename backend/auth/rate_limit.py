"""In-memory rate limiters: requests per user per minute, and failed sign-ins per name and address.

State lives in the process: with several uvicorn workers each one counts on its own, so the
effective limit is at most workers x the setting. That keeps every request free of disk writes;
a shared store (Redis) would be the next step for a fleet of servers.
"""

from __future__ import annotations

import time
from collections import deque
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


class FailureLimiter:
    """Sliding window of failures per key.

    After `max_failures` within `window_s` the key is blocked until the oldest of them leaves the window.
    """

    def __init__(self, max_failures: int, window_s: float, clock: Clock = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, key: str) -> float:
        """0.0 if `key` may try now, else the seconds to wait."""
        failures = self._failures.get(key)
        if not failures:
            return 0.0
        now = self._clock()
        while failures and now - failures[0] >= self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0.0
        if len(failures) < self.max_failures:
            return 0.0
        return self.window_s - (now - failures[0])

    def record_failure(self, key: str) -> float:
        """Count one failure for `key` now; returns its time, which `release` takes to un-count it."""
        now = self._clock()
        if key not in self._failures and len(self._failures) >= MAX_TRACKED_KEYS:
            self._forget_expired(now)
        failures = self._failures.setdefault(key, deque(maxlen=self.max_failures))
        failures.append(now)
        return now

    def release(self, key: str, recorded_at: float) -> None:
        """Un-count one failure recorded at `recorded_at`: an attempt counted in advance that succeeded."""
        failures = self._failures.get(key)
        if failures is None:
            return
        try:
            failures.remove(recorded_at)
        except ValueError:  # already out of the window
            return
        if not failures:
            del self._failures[key]

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)

    def _forget_expired(self, now: float) -> None:
        for key in [key for key, times in self._failures.items() if not times or now - times[-1] >= self.window_s]:
            del self._failures[key]
        if len(self._failures) >= MAX_TRACKED_KEYS:  # all recent: drop the oldest half rather than grow
            by_age = sorted(self._failures, key=lambda key: self._failures[key][-1])
            for key in by_age[: len(by_age) // 2]:
                del self._failures[key]
