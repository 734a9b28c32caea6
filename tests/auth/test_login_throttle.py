"""The password-guess throttle on a fake clock: progressive delay per pair, ceilings per address and
per username, familiar addresses, expiry, and memory that stays bounded under a flood of names."""

from __future__ import annotations

import tracemalloc

import pytest

from backend.auth.login_throttle import KNOWN_ADDRESS_TTL_S, ExpiringTable, LoginThrottle

OWNER_HOME = "198.51.100.7"
STRANGER = "203.0.113.5"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _throttle(clock: FakeClock, **overrides: float) -> LoginThrottle:
    values: dict[str, float] = {
        "free_failures": 3, "max_delay_s": 60, "max_per_address": 1000, "max_per_username": 1000, "window_s": 900,
    }
    values.update(overrides)
    return LoginThrottle(
        free_failures=int(values["free_failures"]), max_delay_s=values["max_delay_s"],
        max_per_address=int(values["max_per_address"]), max_per_username=int(values["max_per_username"]),
        window_s=values["window_s"], max_entries=int(values.get("max_entries", 100_000)), clock=clock,
    )


def _fail(throttle: LoginThrottle, username: str, address: str) -> None:
    assert throttle.retry_after(username, address) == 0.0
    throttle.failed(throttle.count(username, address))


def test_after_the_free_failures_each_wait_doubles_up_to_the_cap() -> None:
    clock = FakeClock()
    throttle = _throttle(clock, free_failures=3, max_delay_s=60)
    for _ in range(3):
        _fail(throttle, "alice", STRANGER)
    waits = []
    for _ in range(8):
        wait = throttle.retry_after("alice", STRANGER)
        waits.append(wait)
        clock.now += wait
        _fail(throttle, "alice", STRANGER)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]


def test_the_delay_runs_from_the_wrong_answer_not_from_when_the_guess_arrived() -> None:
    clock = FakeClock()
    throttle = _throttle(clock, free_failures=1)
    guess = throttle.count("alice", STRANGER)
    clock.now += 0.8  # the password check takes its time
    throttle.failed(guess)
    assert throttle.retry_after("alice", STRANGER) == 1.0


def test_a_success_resets_the_pair_and_gives_its_guess_back() -> None:
    clock = FakeClock()
    throttle = _throttle(clock, free_failures=2, max_per_address=3)
    _fail(throttle, "alice", OWNER_HOME)
    _fail(throttle, "alice", OWNER_HOME)
    assert throttle.retry_after("alice", OWNER_HOME) == 1.0
    clock.now += 1
    throttle.succeeded(throttle.count("alice", OWNER_HOME))
    assert throttle.retry_after("alice", OWNER_HOME) == 0.0
    for _ in range(2):  # the pair starts over with its free failures
        _fail(throttle, "alice", OWNER_HOME)
    assert throttle.retry_after("alice", OWNER_HOME) > 0


def test_a_strangers_guesses_never_slow_the_same_name_from_another_address() -> None:
    clock = FakeClock()
    throttle = _throttle(clock, free_failures=3, max_delay_s=3600)
    for _ in range(3):
        _fail(throttle, "alice", STRANGER)
    for _ in range(20):
        clock.now += throttle.retry_after("alice", STRANGER)
        _fail(throttle, "alice", STRANGER)
    assert throttle.retry_after("alice", STRANGER) == 3600
    assert throttle.retry_after("alice", OWNER_HOME) == 0.0


def test_one_address_spraying_many_names_meets_its_ceiling() -> None:
    clock = FakeClock()
    throttle = _throttle(clock, max_per_address=50, window_s=900)
    for index in range(50):
        _fail(throttle, f"guess-{index}", STRANGER)
    assert throttle.retry_after("guess-50", STRANGER) == pytest.approx(18.0)  # one more per 900/50 s
    assert throttle.retry_after("alice", OWNER_HOME) == 0.0
    clock.now += 18
    _fail(throttle, "guess-50", STRANGER)
    assert throttle.retry_after("guess-51", STRANGER) > 0


def test_a_distributed_attack_closes_a_name_to_new_addresses_but_not_to_its_familiar_ones() -> None:
    clock = FakeClock()
    throttle = _throttle(clock, max_per_username=100)
    throttle.succeeded(throttle.count("alice", OWNER_HOME))
    for index in range(100):
        _fail(throttle, "alice", f"10.0.{index // 250}.{index % 250}")
    assert throttle.retry_after("alice", "10.9.9.9") > 0  # a new address: refused
    assert throttle.retry_after("alice", OWNER_HOME) == 0.0  # where alice signed in: still open
    assert throttle.retry_after("bob", "10.9.9.9") == 0.0


def test_a_familiar_address_skips_the_ceilings_but_not_its_own_progressive_delay() -> None:
    clock = FakeClock()
    throttle = _throttle(clock, free_failures=2, max_per_address=3)
    throttle.succeeded(throttle.count("alice", OWNER_HOME))
    for index in range(3):  # someone behind the same NAT fills the address's ceiling
        _fail(throttle, f"guess-{index}", OWNER_HOME)
    assert throttle.retry_after("bob", OWNER_HOME) > 0
    assert throttle.retry_after("alice", OWNER_HOME) == 0.0
    _fail(throttle, "alice", OWNER_HOME)
    _fail(throttle, "alice", OWNER_HOME)
    assert throttle.retry_after("alice", OWNER_HOME) == 1.0  # guessing alice from there is still slowed


def test_quiet_entries_are_forgotten() -> None:
    clock = FakeClock()
    throttle = _throttle(clock, free_failures=1, max_delay_s=60, max_per_address=2, window_s=900)
    throttle.succeeded(throttle.count("alice", OWNER_HOME))
    _fail(throttle, "bob", STRANGER)
    _fail(throttle, "carol", STRANGER)
    assert throttle.retry_after("bob", STRANGER) > 0
    clock.now += 900 + 60
    assert throttle.retry_after("bob", STRANGER) == 0.0
    throttle.count("dave", "192.0.2.1")  # a write prunes what has expired
    assert throttle.table_sizes() == {"pairs": 1, "addresses": 1, "usernames": 1, "known": 1}
    clock.now += KNOWN_ADDRESS_TTL_S
    throttle.succeeded(throttle.count("erin", "192.0.2.2"))
    assert throttle.table_sizes()["known"] == 1  # erin's; alice's familiar address has expired


def test_an_expiring_table_drops_the_least_recently_written_entry_when_full() -> None:
    table: ExpiringTable[int] = ExpiringTable(max_entries=3, ttl_s=100)
    for key, now in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
        table.put(key, 0, now)
    table.put("a", 1, 4.0)  # rewriting moves it to the back
    table.put("d", 0, 5.0)
    assert len(table) == 3
    assert table.get("b", 5.0) is None
    assert table.get("a", 5.0) == (4.0, 1)
    assert table.get("a", 104.0) is None


def test_memory_stays_bounded_under_100k_distinct_usernames_and_addresses() -> None:
    clock = FakeClock()
    throttle = _throttle(clock, free_failures=5, max_delay_s=300, max_per_address=50, max_per_username=100,
                         max_entries=5_000)
    # The longest names a sign-in accepts, each from its own address: every guess is a new entry everywhere.
    guesses = [(f"user-{i:08d}".ljust(64, "x"), f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}") for i in range(100_000)]
    levels = []
    tracemalloc.start()
    try:
        for index, (name, address) in enumerate(guesses, start=1):
            throttle.retry_after(name, address)
            throttle.count(name, address)
            clock.now += 0.001
            if index % 10_000 == 0:
                levels.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert throttle.table_sizes() == {"pairs": 5_000, "addresses": 5_000, "usernames": 5_000, "known": 0}
    assert max(levels) < 5 * 2**20  # measured 3.3 MB: about 0.22 KB per entry per table
    assert max(levels) - min(levels) < 256 * 2**10  # flat: 90k more names took the room of old ones
