"""The request rate limiter, driven by a fake clock: the per-minute budget of each user."""

from __future__ import annotations

from backend.auth.rate_limit import RequestRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_request_limiter_allows_the_budget_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    limiter = RequestRateLimiter(60, clock)
    assert all(limiter.acquire("alice") == 0.0 for _ in range(60))
    wait = limiter.acquire("alice")
    assert 0.9 < wait <= 1.0  # 60/min refills one request per second
    clock.now += 1.0
    assert limiter.acquire("alice") == 0.0
    assert limiter.acquire("alice") > 0


def test_request_limiter_counts_each_user_separately() -> None:
    limiter = RequestRateLimiter(2, FakeClock())
    assert limiter.acquire("alice") == 0.0 and limiter.acquire("alice") == 0.0
    assert limiter.acquire("alice") > 0
    assert limiter.acquire("bob") == 0.0


def test_request_limiter_of_zero_is_off() -> None:
    limiter = RequestRateLimiter(0, FakeClock())
    assert not limiter.enabled
    assert all(limiter.acquire("alice") == 0.0 for _ in range(10_000))
