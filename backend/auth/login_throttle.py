"""Throttling of password guesses (sign-in, `current_password`): a stranger can neither lock the owner out nor dodge it.

Why this scheme: a hard lock per username (what we had) lets anyone lock any user out with ten wrong
guesses, and a limit per address alone lets a botnet guess freely. So, as OWASP's guidance on
brute-force protection and Microsoft Entra's Smart Lockout (familiar versus unfamiliar locations) do,
guesses are counted three ways:

- per (username, address) pair: `free_failures` wrong guesses, then every further attempt waits an
  exponentially growing delay after the last wrong answer (1 s, 2 s, 4 s ... capped at `max_delay_s`): a
  progressive delay, never a lock. A success resets the pair. This is what one guesser meets, and it
  never slows the same name from another address.
- per address, over every username: at most `max_per_address` failures per window (a leaky bucket,
  so the ceiling is smooth rather than a cliff at the window's edge): one address spraying many names.
- per username, over every address: at most `max_per_username` failures per window, high enough that
  only a distributed attack reaches it (one address gets about a dozen guesses per name per window
  through its pair delay). Beyond it the name is refused from every address except the ones it signed
  in from successfully in the last `KNOWN_ADDRESS_TTL_S`: the owner's familiar addresses keep working.

An address where a name signed in recently is exempt from both ceilings for that name (never from the
pair's delay), so an attacker sharing the owner's NAT cannot lock them out either.

Memory is bounded: each table holds at most `max_entries` (the least recently written goes first) and
forgets entries that have been quiet for their lifetime, so cycling millions of names or addresses
costs a fixed amount. Dropping an entry early only ever forgives, and pushing a name's counter out
takes `max_entries` fresh entries, more than the per-address ceiling lets a few addresses write.

State lives in the process, like the request rate limiter's: with several workers each counts on its own.
Nothing here awaits, so a check and its count happen together even for guesses sent in parallel.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Clock = Callable[[], float]
V = TypeVar("V")

FIRST_DELAY_S = 1.0
"""The wait after the last free failure; it doubles with every failure after that."""
KNOWN_ADDRESS_TTL_S = 30 * 86_400.0
"""How long an address where a name signed in stays exempt from the ceilings for that name."""
DEFAULT_MAX_ENTRIES = 100_000


class ExpiringTable(Generic[V]):
    """A map of at most `max_entries` whose entries vanish `ttl_s` after they were last written.

    Kept in write order, so the expired entries and the least recently written one are always at the
    front: pruning on every write costs O(1) amortised and never scans the table.
    """

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> tuple[float, V] | None:
        """(when it was written, value), or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now - entry[0] >= self.ttl_s:
            del self._entries[key]
            return None
        return entry

    def put(self, key: str, value: V, now: float) -> None:
        self._entries[key] = (now, value)
        self._entries.move_to_end(key)
        while self._entries:
            oldest, (written, _) = next(iter(self._entries.items()))
            if len(self._entries) <= self.max_entries and now - written < self.ttl_s:
                break
            del self._entries[oldest]

    def pop(self, key: str) -> None:
        self._entries.pop(key, None)


class LeakyBucket:
    """Failures per key that drain at `capacity / window_s` per second; full means wait."""

    def __init__(self, capacity: int, window_s: float, max_entries: int) -> None:
        self.capacity = capacity
        self._rate = capacity / window_s
        self._levels: ExpiringTable[float] = ExpiringTable(max_entries, window_s)

    def __len__(self) -> int:
        return len(self._levels)

    def _level(self, key: str, now: float) -> float:
        entry = self._levels.get(key, now)
        if entry is None:
            return 0.0
        written, level = entry
        return max(0.0, level - (now - written) * self._rate)

    def retry_after(self, key: str, now: float) -> float:
        """0.0 when one more failure fits, else the seconds until it does."""
        excess = self._level(key, now) + 1.0 - self.capacity
        return excess / self._rate if excess > 0 else 0.0

    def add(self, key: str, now: float, amount: float = 1.0) -> None:
        # Capped at the capacity, so a quiet window always empties it (and the entry's lifetime is exact).
        level = min(float(self.capacity), self._level(key, now) + amount)
        if level <= 0:
            self._levels.pop(key)
        else:
            self._levels.put(key, level, now)


@dataclass(frozen=True)
class CountedGuess:
    """A guess counted as failed before its password is checked; `succeeded` takes it back."""

    username: str
    address: str


def _pair(username: str, address: str) -> str:
    # An address never holds a NUL (not from a socket nor from an HTTP header), so this cannot collide.
    return f"{address}\0{username}"


class LoginThrottle:
    """The three counters described above: per guess `retry_after`, `count`, then `failed` or `succeeded`."""

    def __init__(
        self,
        *,
        free_failures: int,
        max_delay_s: float,
        max_per_address: int,
        max_per_username: int,
        window_s: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Clock = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.max_delay_s = max_delay_s
        self._clock = clock
        # A pair is forgotten only a whole window after its delay has run out.
        self._pairs: ExpiringTable[int] = ExpiringTable(max_entries, window_s + max_delay_s)
        self._by_address = LeakyBucket(max_per_address, window_s, max_entries)
        self._by_username = LeakyBucket(max_per_username, window_s, max_entries)
        self._known: ExpiringTable[None] = ExpiringTable(max_entries, KNOWN_ADDRESS_TTL_S)

    def delay_after(self, failures: int) -> float:
        """The wait before the next attempt of a pair with `failures` recent failures."""
        if failures < self.free_failures:
            return 0.0
        return min(self.max_delay_s, FIRST_DELAY_S * 2.0 ** min(failures - self.free_failures, 60))

    def retry_after(self, username: str, address: str) -> float:
        """0.0 when this guess may be checked now, else the seconds to wait."""
        now = self._clock()
        pair = _pair(username, address)
        entry = self._pairs.get(pair, now)
        wait = 0.0 if entry is None else max(0.0, entry[0] + self.delay_after(entry[1]) - now)
        if self._known.get(pair, now) is None:
            wait = max(wait, self._by_address.retry_after(address, now), self._by_username.retry_after(username, now))
        return wait

    def count(self, username: str, address: str) -> CountedGuess:
        """Count one failed guess now (before the slow password check, so parallel guesses see it)."""
        now = self._clock()
        pair = _pair(username, address)
        entry = self._pairs.get(pair, now)
        self._pairs.put(pair, 1 if entry is None else entry[1] + 1, now)
        self._by_address.add(address, now)
        self._by_username.add(username, now)
        return CountedGuess(username, address)

    def failed(self, guess: CountedGuess) -> None:
        """The password was wrong: the pair's delay runs from now, when the guesser gets the answer."""
        now = self._clock()
        pair = _pair(guess.username, guess.address)
        entry = self._pairs.get(pair, now)
        self._pairs.put(pair, 1 if entry is None else entry[1], now)

    def succeeded(self, guess: CountedGuess) -> None:
        """The password was right: reset the pair, un-count the guess and remember the address for this name."""
        now = self._clock()
        pair = _pair(guess.username, guess.address)
        self._pairs.pop(pair)
        self._by_address.add(guess.address, now, -1.0)
        self._by_username.add(guess.username, now, -1.0)
        self._known.put(pair, None, now)

    def take_for_address(self, address: str) -> float:
        """Count an attempt against the address alone (sign-up); 0.0 when it may go ahead, else the wait."""
        now = self._clock()
        wait = self._by_address.retry_after(address, now)
        if wait == 0.0:
            self._by_address.add(address, now)
        return wait

    def table_sizes(self) -> dict[str, int]:
        """Entries held per table, for tests and diagnostics."""
        return {
            "pairs": len(self._pairs), "addresses": len(self._by_address),
            "usernames": len(self._by_username), "known": len(self._known),
        }
