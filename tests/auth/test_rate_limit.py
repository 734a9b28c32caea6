"""The rate limiters, driven by a fake clock: per-minute request budget and failed sign-in windows."""

from __future__ import annotations

from backend.auth.rate_limit import FailureLimiter, RequestRateLimiter


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


def test_failure_limiter_blocks_after_the_limit_until_the_oldest_failure_expires() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(max_failures=3, window_s=60, clock=clock)
    for _ in range(2):
        limiter.record_failure("name:alice")
        clock.now += 10
    assert limiter.retry_after("name:alice") == 0.0
    limiter.record_failure("name:alice")
    assert limiter.retry_after("name:alice") == 40.0  # first failure at t, now t+20, window 60
    clock.now += 40
    assert limiter.retry_after("name:alice") == 0.0
    assert limiter.retry_after("name:bob") == 0.0


def test_failure_limiter_reset_clears_a_key() -> None:
    limiter = FailureLimiter(max_failures=1, window_s=60, clock=FakeClock())
    limiter.record_failure("name:alice")
    assert limiter.retry_after("name:alice") > 0
    limiter.reset("name:alice")
    assert limiter.retry_after("name:alice") == 0.0


def test_failure_limiter_release_uncounts_one_failure_counted_in_advance() -> None:
    clock = FakeClock()
    limiter = FailureLimiter(max_failures=2, window_s=60, clock=clock)
    first = limiter.record_failure("10.0.0.1")
    clock.now += 1
    second = limiter.record_failure("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") > 0
    limiter.release("10.0.0.1", second)
    assert limiter.retry_after("10.0.0.1") == 0.0  # the first failure still counts
    limiter.record_failure("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") > 0
    limiter.release("10.0.0.1", first)
    limiter.release("10.0.0.1", first)  # releasing twice, or after expiry, is harmless
    limiter.release("10.0.0.9", first)
    assert limiter.retry_after("10.0.0.1") == 0.0
